"""INVERT's beam search over formulas, a batch of neurons at a time.

How it computes (see also :mod:`repwidgets.engines.invert`):

* Atoms as one product: the rank sums of all K concepts for all neurons are ``q^T C``;
  negations follow for free (``sum over NOT c = -sum over c``).
* Beam steps as one product: for a beam formula ``phi`` and every concept ``c``,
  ``ranksum(phi AND c) = (q * phi)^T C`` and ``count(phi AND c) = phi^T C``; the other
  three operations follow from set algebra without touching the samples again.
* Exact where it matters: float32 products shortlist candidates; the shortlisted masks
  are rebuilt and their rank sums, counts and integer hashes recomputed exactly
  (:mod:`.bits`), so reported AUCs are exact and equal masks are recognised as equal.
* Deduplication: a formula whose mask equals an atom's becomes that atom; among equal
  masks the shorter formula is kept, then the lexicographically first text.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from .bits import ONES8, digit_bits, from_digits, pack, to_digits, unpack
from .formulas import AND, OR, atom_text, formula_text

__all__ = ["BeamSearch"]


class BeamSearch:
    """Beam search over formulas for a batch of neurons at a time (see the module doc).

    Masks are bool tensors whose sample axis is padded to a multiple of 8, so that they
    can be combined eight samples at a time through int64 views; padded samples carry
    zero weight in every sum and are absent from every concept.
    """

    def __init__(
        self,
        concepts: torch.Tensor,
        names: list[str],
        max_length: int,
        beam_size: int,
        min_fraction: float,
        max_fraction: float,
        max_operands: int | None,
        memory_budget: int,
        timings: dict,
        seed: int = 0,
    ) -> None:
        device = concepts.device
        self.device = device
        self.n, self.K = concepts.shape
        n, K = self.n, self.K
        self.n_pad = -(-n // 8) * 8
        self.names = names
        self.L, self.B = max_length, beam_size
        self.max_operands = max_operands
        self.memory_budget = memory_budget
        self.timings = timings
        # masks of every atom (concepts, then their negations) as bools [2K, n_pad] and
        # as int64 words [2K, n_pad / 8]
        atoms = torch.empty(2 * K, self.n_pad, dtype=torch.bool, device=device)
        atoms[:K, :n] = concepts.T
        atoms[:K, n:] = False
        self.atom_words = pack(atoms)
        torch.bitwise_xor(self.atom_words[:K], ONES8, out=self.atom_words[K:])
        self.Cf = torch.empty(self.n_pad, K, dtype=torch.float32, device=device)
        self.Cf[:n] = concepts  # [n_pad, K] for the products
        self.Cf[n:] = 0.0
        self.lo = max(1, math.ceil(min_fraction * n - 1e-9))
        self.hi = min(n - 1, math.floor(max_fraction * n + 1e-9))
        # Exact sums in float32: every weight is split into digits of `bits` bits.
        self.bits = digit_bits(n)
        self.q_digits = -(-math.ceil(math.log2(2 * n)) // self.bits)
        h_digits = max(2, -(-30 // self.bits))  # >= 30 bits per hash, two hashes
        self.h_digits = h_digits
        gen = torch.Generator().manual_seed(seed)
        H = torch.randint(0, 2 ** (self.bits * h_digits), (n, 2), generator=gen, dtype=torch.int64)
        H = H.to(device)
        shared = torch.zeros(self.n_pad, 2 * h_digits + 1, dtype=torch.float32, device=device)
        shared[:n, :h_digits] = to_digits(H[:, 0], self.bits, h_digits)
        shared[:n, h_digits : 2 * h_digits] = to_digits(H[:, 1], self.bits, h_digits)
        shared[:n, -1] = 1.0
        self.shared_w = shared  # [n_pad, 2 h + 1]: hash digits and the count column
        sums = (shared.T @ self.Cf).T  # [K, 2h + 1], exact
        self.cnt_c = sums[:, -1].to(torch.int64)  # [K]
        sig_c = torch.stack(
            [
                from_digits(sums[:, :h_digits], self.bits),
                from_digits(sums[:, h_digits : 2 * h_digits], self.bits),
            ],
            dim=1,
        )
        total = H.sum(0)
        self.atom_sig2 = torch.cat([sig_c, total - sig_c])  # [2K, 2] int64
        self.atom_sig = self.atom_sig2[:, 0].contiguous()
        self.atom_cnt = torch.cat([self.cnt_c, n - self.cnt_c])  # [2K]
        self.atom_valid = (self.atom_cnt >= self.lo) & (self.atom_cnt <= self.hi)
        self._text_cache: dict[tuple, str] = {}
        self.advance: Callable[[int], object] = lambda _neurons: None  # progress per step
        self._canonical_atoms()

    # -- helpers -----------------------------------------------------------------------
    def _atom_masks(self, atoms: torch.Tensor) -> torch.Tensor:
        """Masks of atom indices (any shape) -> bool [..., n_pad]."""
        return unpack(self.atom_words[atoms])

    def _text(self, atoms: tuple, ops: tuple) -> str:
        key = (atoms, ops)
        text = self._text_cache.get(key)
        if text is None:
            text = formula_text(atoms, ops, self.names)
            self._text_cache[key] = text
        return text

    def _canonical_atoms(self) -> None:
        """Map every atom to the lexicographically first atom with the same mask."""
        K2 = 2 * self.K
        texts = [atom_text(a, self.names) for a in range(K2)]
        lex = torch.empty(K2, dtype=torch.int64)
        lex[torch.tensor(sorted(range(K2), key=lambda a: (texts[a], a)))] = torch.arange(K2)
        lex = lex.to(self.device)
        key = torch.cat([self.atom_sig2, self.atom_cnt[:, None]], dim=1)
        _, group = torch.unique(key, dim=0, return_inverse=True)
        best = torch.full((K2,), K2, dtype=torch.int64, device=self.device)
        best.scatter_reduce_(0, group, lex, reduce="amin")
        by_lex = torch.empty_like(lex)
        by_lex[lex] = torch.arange(K2, device=self.device)
        self.canon = by_lex[best[group]]
        order = torch.argsort(self.atom_sig, stable=True)
        self.sig_sorted = self.atom_sig[order].contiguous()
        self.sig_order = order

    def timed(self, key: str, start: float) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - start

    def _weights(self, q: torch.Tensor) -> torch.Tensor:
        """Per-batch digit weights [Nb, n_pad, C]: rank digits, hash digits, count."""
        Nb = q.shape[0]
        shifted = torch.zeros(Nb, self.n_pad, dtype=torch.int64, device=self.device)
        shifted[:, : self.n] = q + (self.n - 1)  # non-negative
        qd = to_digits(shifted, self.bits, self.q_digits)
        qd[:, self.n :] = 0.0
        return torch.cat([qd, self.shared_w.expand(Nb, *self.shared_w.shape)], dim=2)

    # -- one batch of neurons -----------------------------------------------------------
    def run(self, q: torch.Tensor) -> dict:
        """Beam search for a batch of neurons. ``q``: int64 [Nb, n] doubled centred ranks
        (negated for the negative mode). Returns the final beams (dict of tensors)."""
        n, K, Nb = self.n, self.K, q.shape[0]
        t0 = time.perf_counter()
        qf = torch.zeros(Nb, self.n_pad, dtype=torch.float32, device=self.device)
        qf[:, :n] = q
        W = self._weights(q)
        self.timed("weights_s", t0)

        t0 = time.perf_counter()
        s_atom = qf @ self.Cf  # [Nb, K] approximate rank sums of the concepts
        self.timed("products_s", t0)
        self.timings["product_flops"] = self.timings.get("product_flops", 0) + 2.0 * Nb * n * K
        cntf = self.cnt_c.to(torch.float32)
        den = 2.0 * cntf * (n - cntf)
        auc_c = torch.where(den > 0, 0.5 + s_atom / den.clamp(min=1), 0.5)
        cols, allowed = self._operands(auc_c)
        operands = {
            "cols": cols,
            "allowed": allowed,
            "Cf": self.Cf if cols.numel() == K else self.Cf[:, cols].contiguous(),
            "s": s_atom[:, cols][:, None, :],  # [Nb, 1, Kc] rank sums of the operands
            "c": cntf[cols][None, None, :],  # [1, 1, Kc] their counts
        }

        t0 = time.perf_counter()
        score = torch.cat([auc_c, 1.0 - auc_c], dim=1)
        score = torch.where(self.atom_valid[None, :], score, -torch.inf)
        beam = self._select(score, self._decode_atoms, None, W)
        self.timed("select_s", t0)
        self.advance(Nb)
        for _step in range(2, self.L + 1):
            cand = self._step_scores(beam, qf, operands)
            t0 = time.perf_counter()
            beam = self._select(cand, self._step_decoder(beam, cols), beam, W)
            self.timed("select_s", t0)
            self.advance(Nb)
        return beam

    def _operands(self, auc_c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Concepts a beam step may add: all K, or with ``max_operands`` each neuron's top
        concepts by ``|AUC - 0.5|``. Returns the columns used by any neuron [Kc] and, when
        restricted, which of them each neuron may use (bool [Nb, Kc])."""
        K = self.K
        if self.max_operands is None or self.max_operands >= K:
            return torch.arange(K, device=self.device), None
        Nb = auc_c.shape[0]
        top = torch.topk((auc_c - 0.5).abs(), self.max_operands, dim=1).indices
        allowed_full = torch.zeros(Nb, K, dtype=torch.bool, device=self.device)
        allowed_full.scatter_(1, top, True)
        cols = torch.nonzero(allowed_full.any(0)).flatten()
        return cols, allowed_full[:, cols]

    def _decode_atoms(self, rows: torch.Tensor, flat: torch.Tensor) -> dict:
        """Formulas of length 1 from flat atom indices [R, T]."""
        L = self.L
        return {
            "atoms": torch.cat([flat[..., None], flat.new_full((*flat.shape, L - 1), -1)], -1),
            "ops": torch.zeros(*flat.shape, L, dtype=torch.int8, device=self.device),
            "length": torch.ones_like(flat),
            "masks": self._atom_masks(flat),
            "order": flat.clone(),
        }

    def _step_scores(self, beam: dict, qf: torch.Tensor, operands: dict) -> torch.Tensor:
        """Approximate AUCs [Nb, B * 4 * Kc] of every beam formula combined with every
        operand by the four operations (-inf where the fraction filter or the operand
        restriction rules a candidate out)."""
        n, B = self.n, self.B
        Nb = qf.shape[0]
        Kc = operands["cols"].numel()
        t0 = time.perf_counter()
        m = beam["masks"]  # [Nb, B, n_pad]
        left = torch.empty(2, Nb, B, self.n_pad, dtype=torch.float32, device=self.device)
        torch.mul(m, qf[:, None, :], out=left[0])
        left[1].copy_(m)
        self.timed("products_prep_s", t0)
        t0 = time.perf_counter()
        prod = (left.view(2 * Nb * B, self.n_pad) @ operands["Cf"]).view(2, Nb, B, Kc)
        del left
        self.timed("products_s", t0)
        self.timings["product_flops"] += 2.0 * (2 * Nb * B) * n * Kc
        t0 = time.perf_counter()
        p_s, p_c = prod[0], prod[1]
        s_phi = beam["s2"].to(torch.float32)[:, :, None]
        c_phi = beam["cnt"].to(torch.float32)[:, :, None]
        s_c, c_c = operands["s"], operands["c"]
        sums = torch.stack([p_s, s_phi - p_s, s_phi + s_c - p_s, p_s - s_c], dim=2)
        cnts = torch.stack([p_c, c_phi - p_c, c_phi + c_c - p_c, n - c_c + p_c], dim=2)
        del prod, p_s, p_c
        # equal counts with the parent mean the parent's own mask: drop (it is shorter)
        ok = (cnts >= self.lo) & (cnts <= self.hi) & (cnts != c_phi[..., None])
        ok &= beam["valid"][:, :, None, None]
        if operands["allowed"] is not None:
            ok &= operands["allowed"][:, None, None, :]
        den = (2.0 * cnts * (n - cnts)).clamp(min=1.0)
        cand = torch.where(ok, 0.5 + sums / den, -torch.inf).view(Nb, B * 4 * Kc)
        self.timed("select_s", t0)
        return cand

    def _step_decoder(self, beam: dict, cols: torch.Tensor):
        """``decode(rows, flat)``: the formulas of flat candidate indices [R, T] (beam
        entry, operation, operand), with their exact masks built from packed words."""
        K, B, L = self.K, self.B, self.L
        Kc = cols.numel()
        beam_words = pack(beam["masks"])  # [Nb, B, n_pad / 8]

        def decode(rows: torch.Tensor, flat: torch.Tensor) -> dict:
            b = flat // (4 * Kc)
            op = (flat // Kc) % 4
            k = cols[flat % Kc]
            r = rows[:, None].expand_as(flat)
            # AND: p & c;  OR: ~(~p & ~c);  c is the atom (the concept or its negation)
            is_or = op >= 2
            f = (is_or.long() * ONES8)[..., None]
            words = beam_words[r, b] ^ f
            words &= self.atom_words[k + K * ((op % 2 == 1) ^ is_or).long()]
            words ^= f
            atoms = beam["atoms"][r, b].clone()
            ops = beam["ops"][r, b].clone()
            plen = beam["length"][r, b]  # shorter formulas stay in the beam
            slot = plen.clamp(max=L - 1)[..., None]
            atoms.scatter_(-1, slot, (k + K * (op % 2))[..., None])
            ops.scatter_(-1, slot, torch.where(op < 2, AND, OR).to(torch.int8)[..., None])
            return {
                "atoms": atoms,
                "ops": ops,
                "length": plen + 1,
                "masks": unpack(words),
                "order": B + (b * 4 + op) * K + k,
            }

        return decode

    # -- shortlist, exact recount, dedup, sort ---------------------------------------------
    def _select(self, cand: torch.Tensor, decode, old: dict | None, W: torch.Tensor) -> dict:
        """New beam from the old one and the candidates' approximate scores [Nb, M]."""
        Nb, M = cand.shape
        B = self.B
        n_valid = (cand > -torch.inf).sum(1)
        rows = torch.arange(Nb, device=self.device)
        # Shortlist length: enough candidates to hold B + 2 distinct scores. Equal masks
        # (e.g. commuted ANDs) have equal scores up to rounding, so they count once.
        T0 = min(M, 8 * B + 8)
        vals, flat = torch.topk(cand, T0, dim=1)
        distinct = torch.ones_like(vals, dtype=torch.int64)
        distinct[:, 1:] = ((vals[:, :-1] - vals[:, 1:]) > 2e-6).to(torch.int64)
        enough = distinct.cumsum(1) >= B + 2
        t_row = torch.where(enough.any(1), enough.to(torch.int8).argmax(1) + 1, T0)
        # one length for the batch; the few neurons that need more are retried below
        T = int(torch.quantile(t_row.to(torch.float64).cpu(), 0.9).ceil())
        out: dict | None = None
        first = True
        while True:
            if first:
                vals, flat, first = vals[:, :T], flat[:, :T], False
            else:
                vals, flat = torch.topk(cand[rows], T, dim=1)
            new = decode(rows, flat)
            new["valid"] = vals > -torch.inf
            new["s2"], new["sig"], new["cnt"] = self._exact(
                new["masks"], W if rows.numel() == Nb else W[rows]
            )
            new["valid"] &= (new["cnt"] >= self.lo) & (new["cnt"] <= self.hi)
            if old is not None:
                pool = {
                    key: torch.cat([old[key][rows], new[key]], dim=1)
                    for key in ("atoms", "ops", "length", "valid", "s2", "sig", "cnt")
                }
                pool["old_masks"] = old["masks"][rows] if rows.numel() < Nb else old["masks"]
                pool["new_masks"] = new["masks"]
                pool["order"] = torch.cat(
                    [torch.arange(B, device=self.device).expand(rows.numel(), B), new["order"]],
                    dim=1,
                )
            else:
                pool = dict(new)
                pool["new_masks"] = pool.pop("masks")
            beam, n_unique = self._dedup_sort(pool)
            if out is None:
                out = beam
            else:
                for key in out:
                    out[key][rows] = beam[key]
            retry = (n_unique < B) & (n_valid[rows] > T)
            if not bool(retry.any()) or T >= M:
                return out
            rows = rows[retry]
            self.timings["retries"] = self.timings.get("retries", 0) + int(rows.numel())
            T = min(M, max(T * 4, T0))

    def _exact(self, masks: torch.Tensor, W: torch.Tensor):
        """Exact rank sums, hashes [..., 2] and counts of masks [R, T, n_pad].

        Every weight is an integer digit small enough that all partial sums stay below
        2^24, so the float32 products are exact whatever the summation order: equal
        masks give equal values.
        """
        R, T, n_pad = masks.shape
        per = max(1, int(self.memory_budget // (4 * max(1, R) * n_pad * 2)))
        out = []
        for lo in range(0, T, per):
            out.append(torch.bmm(masks[:, lo : lo + per].to(torch.float32), W))
        res = torch.cat(out, dim=1)  # [R, T, C]
        qd, hd, bits = self.q_digits, self.h_digits, self.bits
        cnt = res[..., -1].to(torch.int64)
        s2 = from_digits(res[..., :qd], bits) - (self.n - 1) * cnt
        sig = torch.stack(
            [
                from_digits(res[..., qd : qd + hd], bits),
                from_digits(res[..., qd + hd : qd + 2 * hd], bits),
            ],
            dim=-1,
        )
        return s2, sig, cnt

    def _dedup_sort(self, pool: dict):
        n, K, B = self.n, self.K, self.B
        valid, sig, cnt, length = pool["valid"], pool["sig"], pool["cnt"], pool["length"]
        s2 = pool["s2"]
        R, P = valid.shape
        # a formula whose mask is an atom's mask becomes that (canonical) atom
        pos = torch.searchsorted(self.sig_sorted, sig[..., 0].contiguous()).clamp(max=2 * K - 1)
        atom = self.sig_order[pos]
        hit = valid & (self.atom_sig2[atom] == sig).all(-1) & (self.atom_cnt[atom] == cnt)
        hit &= (length > 1) | (pool["atoms"][..., 0] != self.canon[atom])
        if bool(hit.any()):
            r, p = torch.nonzero(hit, as_tuple=True)
            pool["atoms"][r, p] = -1
            pool["atoms"][r, p, 0] = self.canon[atom[r, p]]
            pool["ops"][r, p] = 0
            pool["length"][r, p] = 1
            length = pool["length"]
        # duplicates within the pool: keep the shorter, then lexicographically first. Equal
        # masks have equal (hashes, count, rank sum); distinct masks collide with
        # probability below 2^-70.
        eq = (sig[:, :, None, :] == sig[:, None, :, :]).all(-1)
        eq &= (cnt[:, :, None] == cnt[:, None, :]) & (s2[:, :, None] == s2[:, None, :])
        eq &= valid[:, :, None] & valid[:, None, :]
        eq &= torch.ones(P, P, dtype=torch.bool, device=self.device).triu(1)
        dominated = torch.zeros(R, P, dtype=torch.bool, device=self.device)
        if bool(eq.any()):
            r, i, j = torch.nonzero(eq, as_tuple=True)
            li, lj = length[r, i], length[r, j]
            i_wins = li < lj
            tie = li == lj
            if bool(tie.any()):
                # rank the texts of the formulas involved in equal-length ties
                flat_i, flat_j = (r * P + i)[tie], (r * P + j)[tie]
                uniq, inv = torch.unique(torch.cat([flat_i, flat_j]), return_inverse=True)
                atoms_u = pool["atoms"].view(R * P, -1)[uniq].tolist()
                ops_u = pool["ops"].view(R * P, -1)[uniq].tolist()
                len_u = length.view(-1)[uniq].tolist()
                texts = [
                    self._text(tuple(a[:ln]), tuple(o[:ln]))
                    for a, o, ln in zip(atoms_u, ops_u, len_u)
                ]
                rank_of = {t: k for k, t in enumerate(sorted(set(texts)))}
                rank = torch.tensor([rank_of[t] for t in texts], device=self.device)
                ri, rj = rank[inv[: flat_i.numel()]], rank[inv[flat_i.numel() :]]
                oi = pool["order"].view(-1)[flat_i]
                oj = pool["order"].view(-1)[flat_j]
                i_wins[tie] = (ri < rj) | ((ri == rj) & (oi <= oj))
            loser = torch.where(i_wins, j, i)
            dominated[r, loser] = True
        keep = valid & ~dominated
        auc = 0.5 + pool["s2"] / (2.0 * cnt * (n - cnt)).clamp(min=1).to(torch.float64)
        key_auc = torch.where(keep, auc, -torch.inf)
        # sort by (-auc, length, order): successive stable sorts, least significant first
        perm = torch.argsort(pool["order"], dim=1, stable=True)
        perm = perm.gather(1, torch.argsort(length.gather(1, perm), dim=1, stable=True))
        perm = perm.gather(1, torch.argsort(-key_auc.gather(1, perm), dim=1, stable=True))
        sel = perm[:, : min(B, P)]
        rr = torch.arange(R, device=self.device)[:, None]
        beam = {key: pool[key][rr, sel] for key in ("atoms", "ops", "length", "s2", "sig", "cnt")}
        # the selected masks, from the old beam (first B pool slots) or the new candidates
        new_words = pack(pool["new_masks"])
        if "old_masks" in pool:
            n_old = pool["old_masks"].shape[1]
            old_words = pack(pool["old_masks"])
            from_old = (sel < n_old)[..., None]
            words = torch.where(
                from_old,
                old_words[rr, sel.clamp(max=n_old - 1)],
                new_words[rr, (sel - n_old).clamp(min=0)],
            )
        else:
            words = new_words[rr, sel]
        beam["masks"] = unpack(words)
        beam["valid"] = keep[rr, sel]
        beam["auc"] = auc[rr, sel]
        if sel.shape[1] < B:  # fewer candidates than beam slots: pad with invalid entries
            pad = B - sel.shape[1]
            for key, value in beam.items():
                filler = value[:, :1].expand(R, pad, *value.shape[2:]).clone()
                if key == "valid" or key == "masks":
                    filler[:] = False
                beam[key] = torch.cat([value, filler], dim=1)
        return beam, keep.sum(1)
