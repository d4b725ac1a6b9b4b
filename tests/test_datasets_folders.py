"""Image folders with a concept table: rw.datasets.image_folder.

The files are real PNG / JPEG images of the generated shapes data written to a temporary
folder, so the concept labels are the shapes' own: every test checks that the bundle
reads back the same pixels, classes and concept rows as the files and the table hold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

import repwidgets as rw
from repwidgets.datasets import DataBundle, ImageFileError, image_folder
from repwidgets.datasets.folders import stratified_split

N = 40  # images written per folder


@pytest.fixture(scope="module")
def shapes_source():
    """Pixels (uint8 [n, 32, 32, 3]), class names per image and the concept frame."""
    data = rw.datasets.shapes(n_train=N, n_test=1, n_val=0, image_size=32, seed=3)
    images = data.images(range(N), "train")
    pixels = (images * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    classes = [data.class_names[t] for t in data.targets("train").tolist()]
    concepts = pd.DataFrame(data.concepts("train").numpy().astype(int), columns=data.concept_names)
    return pixels, classes, concepts


def write_folder(root: Path, source, layout: str = "folders", fmt: str = "png") -> pd.DataFrame:
    """Write the shapes images under ``root`` and return the table (file, class, concepts).

    ``layout="folders"``: root/<class>/img_XXX.png; ``"flat"``: root/img_XXX.png.
    """
    pixels, classes, concepts = source
    files = []
    for i in range(len(pixels)):
        name = f"img_{i:03d}.{fmt}"
        rel = f"{classes[i]}/{name}" if layout == "folders" else name
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[i]).save(root / rel)
        files.append(rel)
    return pd.concat([pd.DataFrame({"file": files, "label": classes}), concepts], axis=1)


def index_of(file: str) -> int:
    """The shapes sample a file was written from (img_XXX)."""
    return int(Path(file).stem.split("_")[1])


@pytest.fixture
def folder(tmp_path, shapes_source):
    """ImageFolder layout + a CSV (inside the folder: not an image, so ignored)."""
    table = write_folder(tmp_path, shapes_source)
    table.drop(columns=["label"]).to_csv(tmp_path / "concepts.csv", index=False)
    return tmp_path, table


def assert_matches_source(bundle: DataBundle, source, table: pd.DataFrame) -> None:
    """Every sample of every split: its pixels, class and concept row are its file's."""
    pixels, classes, concepts = source
    seen = []
    for split in bundle.split_names:
        files = bundle.files(split)
        ds = bundle.dataset(split)
        assert len(files) == len(ds) == bundle.n(split)
        rows = [index_of(f) for f in files]
        seen += rows
        expected = torch.as_tensor(concepts.iloc[rows].to_numpy().astype(bool))
        assert torch.equal(bundle.concepts(split), expected)
        names = [bundle.class_names[t] for t in bundle.targets(split).tolist()]
        assert names == [classes[r] for r in rows]
        for k in (0, len(ds) - 1):
            image, target = ds[k]
            assert image.dtype == torch.float32 and image.shape == (3, 32, 32)
            assert torch.equal(image, torch.from_numpy(pixels[rows[k]]).permute(2, 0, 1) / 255)
            assert target == bundle.targets(split)[k]
    assert sorted(seen) == list(range(len(table)))  # every file once, in exactly one split


# ---------------------------------------------------------------------- layouts and tables
def test_imagefolder_layout_with_csv(folder, shapes_source):
    root, table = folder
    bundle = image_folder(root, root / "concepts.csv")
    assert isinstance(bundle, DataBundle)
    assert bundle.class_names == sorted(set(shapes_source[1]))  # folder names, sorted
    assert bundle.concept_names == list(shapes_source[2].columns)
    assert bundle.split_names == ["train", "val", "test"]
    assert bundle.name == root.name and bundle.config["kind"] == "image_folder"
    assert_matches_source(bundle, shapes_source, table)
    assert bundle.groups("test") is None
    # the table rows of a split, in sample order
    rows = bundle.table("val")
    assert rows["file"].tolist() == bundle.files("val")


def test_flat_folder_with_class_column(tmp_path, shapes_source):
    table = write_folder(tmp_path, shapes_source, layout="flat")
    table.to_csv(tmp_path / "table.csv", index=False)
    bundle = image_folder(tmp_path, tmp_path / "table.csv", class_column="label")
    assert bundle.class_names == sorted(set(shapes_source[1]))
    assert "label" not in bundle.concept_names and "file" not in bundle.concept_names
    assert_matches_source(bundle, shapes_source, table)


def test_integer_class_column_keeps_ids_and_takes_class_names(tmp_path, shapes_source):
    table = write_folder(tmp_path, shapes_source, layout="flat")
    order = ["star", "circle", "triangle", "square"]  # the model's output order
    table["label"] = [order.index(c) for c in table["label"]]
    bundle = image_folder(tmp_path, table, class_column="label", class_names=order)
    assert bundle.class_names == order
    for split in bundle.split_names:
        ids = [int(table["label"][index_of(f)]) for f in bundle.files(split)]
        assert bundle.targets(split).tolist() == ids
    names = image_folder(
        tmp_path,
        table.assign(label=table["label"].map(order.__getitem__)),
        class_column="label",
        class_names=order,
    )
    assert torch.equal(names.targets("test"), bundle.targets("test"))


def test_dataframe_gives_the_same_bundle_as_csv(folder):
    root, table = folder
    from_csv = image_folder(root, root / "concepts.csv", seed=5)
    from_frame = image_folder(root, table.drop(columns=["label"]), seed=5)
    for split in from_csv.split_names:
        assert from_csv.files(split) == from_frame.files(split)
        assert torch.equal(from_csv.concepts(split), from_frame.concepts(split))
        assert torch.equal(from_csv.targets(split), from_frame.targets(split))


def test_table_paths_may_be_absolute_or_dotted(folder, shapes_source):
    root, table = folder
    table = table.drop(columns=["label"])
    table["file"] = [str(root / f) if k % 2 else "./" + f for k, f in enumerate(table["file"])]
    bundle = image_folder(root, table)
    assert_matches_source(bundle, shapes_source, table)


def test_without_table_images_and_classes_only(folder, shapes_source):
    root, _ = folder
    bundle = image_folder(root, fractions=(0.5, 0, 0.5))
    assert bundle.split_names == ["train", "test"] and bundle.concept_names == []
    with pytest.raises(ValueError, match="no concept labels"):
        bundle.concepts("test")
    pixels, classes, _ = shapes_source
    for f, t in zip(bundle.files("test"), bundle.targets("test").tolist()):
        assert bundle.class_names[t] == classes[index_of(f)] == f.split("/")[0]


# ---------------------------------------------------------------------- splits
def test_split_column_puts_each_row_in_its_split(folder, shapes_source):
    root, table = folder
    table = table.drop(columns=["label"])
    table["split"] = ["train", "train", "Val", "test"] * (N // 4)
    bundle = image_folder(root, table, split_column="split")
    assert "split" not in bundle.concept_names
    for split in ("train", "val", "test"):
        expected = table["file"][table["split"].str.lower() == split].tolist()
        assert bundle.files(split) == expected  # table order
        assert bundle.table(split)["split"].str.lower().eq(split).all()
    assert_matches_source(bundle, shapes_source, table)


def test_fractions_are_stratified_reproducible_and_disjoint(folder):
    root, table = folder
    table = table.drop(columns=["label"])
    a = image_folder(root, table, fractions=(0.5, 0.25, 0.25), seed=1)
    b = image_folder(root, table, fractions=(0.5, 0.25, 0.25), seed=1)
    c = image_folder(root, table, fractions=(0.5, 0.25, 0.25), seed=2)
    files = {s: set(a.files(s)) for s in a.split_names}
    assert {s: b.files(s) for s in b.split_names} == {s: a.files(s) for s in a.split_names}
    assert files != {s: set(c.files(s)) for s in c.split_names}
    assert not files["train"] & files["val"] and not files["train"] & files["test"]
    assert not files["val"] & files["test"]
    assert set().union(*files.values()) == set(table["file"])
    per_class = table["file"].str.split("/").str[0].value_counts()
    for k, name in enumerate(a.class_names):
        n = int(per_class[name])
        counts = [int((a.targets(s) == k).sum()) for s in ("train", "val", "test")]
        assert sum(counts) == n
        assert abs(counts[0] - 0.5 * n) < 1 and abs(counts[1] - 0.25 * n) < 1
    # within a split the samples keep the table's order
    order = table["file"].tolist()
    assert a.files("test") == sorted(a.files("test"), key=order.index)


def test_stratified_split_counts_per_class():
    targets = np.array([0] * 10 + [1] * 7 + [2] * 3)
    codes = stratified_split(targets, (0.7, 0.1, 0.2), seed=0)
    counts = {c: np.bincount(codes[targets == c], minlength=3).tolist() for c in range(3)}
    assert counts == {0: [7, 1, 2], 1: [5, 1, 1], 2: [2, 0, 1]}
    assert not np.array_equal(codes, stratified_split(targets, (0.7, 0.1, 0.2), seed=1))
    with pytest.raises(ValueError, match=r"sum to 1"):
        stratified_split(targets, (0.7, 0.1, 0.1))


def test_a_split_without_images_is_named(folder):
    root, table = folder
    table = table.drop(columns=["label"]).assign(split="train")
    with pytest.raises(ValueError, match=r"The 'test' split has no images"):
        image_folder(root, table, split_column="split")


# ---------------------------------------------------------------------- images
def _known_image(path: Path, size=(40, 30), mode="RGB", seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    arr = rng.integers(0, 256, shape, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode).save(path)
    return arr


def _one_image_bundle(root: Path, **kwargs) -> DataBundle:
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    table = pd.DataFrame({"file": files, "split": ["train", "test"] * (len(files) // 2)})
    table["odd"] = [k % 2 for k in range(len(files))]
    return image_folder(root, table, split_column="split", **kwargs)


@pytest.mark.parametrize(
    ("image_size", "resized", "box"),
    [
        (16, (21, 16), (2, 0, 18, 16)),  # shorter side 30 -> 16, width 40 -> 21, crop 16
        ((12, 20), (20, 15), (0, 1, 20, 13)),  # covers 12x20: scale 0.5, crop rows 1..13
        ((30, 40), None, None),  # already the size: untouched
    ],
)
def test_image_size_resizes_then_centre_crops_like_pil(tmp_path, image_size, resized, box):
    arr = _known_image(tmp_path / "a" / "x.png")
    _known_image(tmp_path / "b" / "y.png", seed=1)
    bundle = _one_image_bundle(tmp_path, image_size=image_size)
    image, _ = bundle.dataset("train")[0]
    expected = Image.fromarray(arr)
    if resized is not None:
        expected = expected.resize(resized, Image.Resampling.BILINEAR).crop(box)
    want = torch.from_numpy(np.asarray(expected).copy()).permute(2, 0, 1).float() / 255
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    assert image.shape == (3, h, w)
    assert torch.equal(image, want)


def test_grey_and_jpeg_images_become_rgb(tmp_path):
    grey = _known_image(tmp_path / "a" / "g.png", size=(8, 8), mode="L")
    (tmp_path / "b").mkdir()
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(tmp_path / "b" / "j.jpg")
    table = pd.DataFrame({"file": ["a/g.png", "b/j.jpg"], "split": ["train", "test"]})
    bundle = image_folder(tmp_path, table, split_column="split")
    image, _ = bundle.dataset("train")[0]
    assert image.shape == (3, 8, 8)
    for c in range(3):
        assert torch.equal(image[c], torch.from_numpy(grey).float() / 255)
    jpeg, target = bundle.dataset("test")[0]
    decoded = np.asarray(Image.open(tmp_path / "b" / "j.jpg").convert("RGB"))
    assert torch.equal(jpeg, torch.from_numpy(decoded.copy()).permute(2, 0, 1).float() / 255)
    assert abs(float(jpeg.mean()) - 200 / 255) < 0.02 and target == 1


def test_images_are_read_from_disk_when_used(folder):
    root, table = folder
    bundle = image_folder(root, root / "concepts.csv")
    ds = bundle.dataset("test")
    first = ds[0][0]
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / bundle.files("test")[0])
    assert first.abs().sum() > 0 and torch.equal(ds[0][0], torch.zeros(3, 32, 32))
    assert torch.equal(bundle.images([0, 1], "test")[0], torch.zeros(3, 32, 32))


# ---------------------------------------------------------------------- groups
def test_groups_are_class_times_concept(folder):
    root, table = folder
    bundle = image_folder(root, root / "concepts.csv", group_concept="watermark")
    k = bundle.concept_index("watermark")
    for split in bundle.split_names:
        has = bundle.concepts(split)[:, k].long()
        assert torch.equal(bundle.groups(split), bundle.targets(split) * 2 + has)
    assert bundle.group_names[:2] == ["circle/no-watermark", "circle/watermark"]
    assert len(bundle.group_names) == 2 * len(bundle.class_names)


# ---------------------------------------------------------------------- errors
def test_corrupt_image_is_named_when_read_and_up_front(folder):
    root, table = folder
    bad = table["file"][5]
    (root / bad).write_bytes(b"this is not a png")
    truncated = table["file"][7]
    (root / truncated).write_bytes((root / truncated).read_bytes()[:60])
    bundle = image_folder(root, root / "concepts.csv", check_files=False)
    split = next(s for s in bundle.split_names if bad in bundle.files(s))
    with pytest.raises(ImageFileError, match=rf"Cannot read image '{bad}'.*check_files=True"):
        bundle.dataset(split)[bundle.files(split).index(bad)]
    split = next(s for s in bundle.split_names if truncated in bundle.files(s))
    with pytest.raises(ImageFileError, match=rf"'{truncated}'"):
        bundle.dataset(split)[bundle.files(split).index(truncated)]
    for check in (True, None):  # None: the folder is small, so every file is opened now
        with pytest.raises(ImageFileError, match=rf"2 image file\(s\) .*'{bad}', '{truncated}'"):
            image_folder(root, root / "concepts.csv", check_files=check)


def test_corrupt_image_is_named_by_a_session(folder):
    root, table = folder
    bundle = image_folder(root, root / "concepts.csv", check_files=False, fractions=(0.5, 0, 0.5))
    bad = bundle.files("test")[3]
    (root / bad).write_bytes(b"broken")
    sess = rw.Session(_model(), bundle, device="cpu", batch_size=8, progress=False)
    with pytest.raises(ImageFileError, match=rf"'{bad}'"):
        sess.activations("0", "test")


def test_table_rows_without_files(folder):
    root, table = folder
    extra = pd.DataFrame({"file": ["circle/nope.png", "star/gone.png"]})
    with_missing = pd.concat([table.drop(columns=["label"]), extra], ignore_index=True).fillna(0)
    with pytest.raises(
        ValueError, match=r"2 row\(s\) .*'circle/nope.png', 'star/gone.png'.*'file'"
    ):
        image_folder(root, with_missing)
    (root / "notes.txt").write_text("hello")
    not_image = pd.concat(
        [table.drop(columns=["label"]), pd.DataFrame({"file": ["notes.txt"]})], ignore_index=True
    ).fillna(0)
    with pytest.raises(ValueError, match=r"'notes.txt' exist but are not image files"):
        image_folder(root, not_image)


def test_images_without_rows(folder):
    root, table = folder
    kept = table.drop(columns=["label"]).iloc[7:]
    dropped = table["file"][:7].tolist()
    first = sorted(dropped)[:5]
    listed = ", ".join(repr(f) for f in first)
    with pytest.raises(ValueError, match=rf"7 image file\(s\) .*no row.*{listed} and 2 more"):
        image_folder(root, kept)
    bundle = image_folder(root, kept, unlisted="ignore")
    assert sum(bundle.n(s) for s in bundle.split_names) == N - 7
    assert not set(dropped) & {f for s in bundle.split_names for f in bundle.files(s)}


def test_duplicate_rows(folder):
    root, table = folder
    doubled = pd.concat([table, table.iloc[[3]]], ignore_index=True)
    with pytest.raises(ValueError, match=rf"lists '{table['file'][3]}' twice \(rows 3 and {N}\)"):
        image_folder(root, doubled.drop(columns=["label"]))


def test_concept_column_that_is_not_boolean(folder):
    root, table = folder
    table = table.drop(columns=["label"])
    bad = table.copy()
    bad.loc[4, "red"] = 2
    with pytest.raises(
        ValueError,
        match=rf"Concept column 'red' is not boolean: row 4 \('{table['file'][4]}'\) holds 2",
    ):
        image_folder(root, bad)
    notes = table.assign(notes="looks fine")
    with pytest.raises(ValueError, match=r"Concept column 'notes' is not boolean.*'looks fine'"):
        image_folder(root, notes)
    names = [c for c in table.columns if c != "file"]
    ok = image_folder(root, notes, concept_columns=names[:3])
    assert ok.concept_names == names[:3]
    booleans = table.assign(red=table["red"].astype(bool), blank=float("nan"))
    with pytest.raises(ValueError, match=r"'blank' is not boolean: row 0 .* holds nan"):
        image_folder(root, booleans)


def test_missing_file_and_class_columns_list_the_columns(folder):
    root, table = folder
    with pytest.raises(
        ValueError, match=r"no file column 'path'; its columns are \['file', 'label', 'circle'"
    ):
        image_folder(root, table, file_column="path")
    with pytest.raises(
        ValueError, match=r"no class column 'kind'; its columns are \['file', 'label'"
    ):
        image_folder(root, table, class_column="kind")


def test_flat_folder_without_class_column(tmp_path, shapes_source):
    table = write_folder(tmp_path, shapes_source, layout="flat")
    with pytest.raises(ValueError, match=r"40 image file\(s\) sit directly .*class_column="):
        image_folder(tmp_path, table.drop(columns=["label"]))


def test_unknown_group_concept_lists_concepts(folder):
    root, _ = folder
    with pytest.raises(ValueError, match=r"Unknown group_concept 'logo'.*\['circle', 'square'"):
        image_folder(root, root / "concepts.csv", group_concept="logo")
    with pytest.raises(ValueError, match=r"needs concept labels"):
        image_folder(root, group_concept="logo")


def test_images_of_different_sizes(tmp_path):
    _known_image(tmp_path / "a" / "x.png", size=(32, 32))
    _known_image(tmp_path / "b" / "y.png", size=(40, 30))
    with pytest.raises(
        ImageFileError, match=r"'b/y.png' is 40x30, but 'a/x.png' is 32x32.*image_size="
    ):
        _one_image_bundle(tmp_path)  # small folder: checked up front
    bundle = _one_image_bundle(tmp_path, check_files=False)
    assert bundle.dataset("train")[0][0].shape == (3, 32, 32)
    with pytest.raises(ImageFileError, match=r"'b/y.png' is 40x30"):
        bundle.dataset("test")[0]
    resized = _one_image_bundle(tmp_path, image_size=24)
    assert resized.dataset("test")[0][0].shape == (3, 24, 24)


def test_bad_arguments(tmp_path, folder):
    root, table = folder
    with pytest.raises(ValueError, match="does not exist"):
        image_folder(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="Concept table"):
        image_folder(root, root / "missing.csv")
    with pytest.raises(ValueError, match="image_size must be"):
        image_folder(root, image_size=(0, 4))
    with pytest.raises(ValueError, match="fractions must be"):
        image_folder(root, fractions=(0.5, 0.5, 0.0))
    with pytest.raises(ValueError, match="needs a concept table"):
        image_folder(root, class_column="label")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="No image files"):
        image_folder(empty)


# ---------------------------------------------------------------------- with a session
def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 4),
    )


def test_session_reads_activations_and_concepts_aligned_with_files(folder, shapes_source):
    root, table = folder
    bundle = image_folder(root, root / "concepts.csv", group_concept="watermark")
    model = _model()
    sess = rw.Session(model, bundle, device="cpu", batch_size=7, progress=False)
    acts = sess.activations("0", "test")
    files = bundle.files("test")
    # the same images read with PIL by hand, through a plain forward hook
    images = torch.stack(
        [
            torch.from_numpy(np.asarray(Image.open(root / f).convert("RGB")).copy())
            .permute(2, 0, 1)
            .float()
            / 255
            for f in files
        ]
    )
    seen = []
    handle = model[0].register_forward_hook(lambda m, i, o: seen.append(o.mean(dim=(2, 3))))
    with torch.no_grad():
        logits = model(images)
    handle.remove()
    assert acts.shape == (len(files), 6)
    torch.testing.assert_close(acts, seen[0])
    torch.testing.assert_close(sess.logits("test"), logits)
    # the concept row of a sample is its file's row in the table
    expected = table.set_index("file").loc[files, sess.concept_names].to_numpy().astype(bool)
    assert torch.equal(sess.concepts("test"), torch.from_numpy(expected))
    assert sess.class_names == sorted(set(shapes_source[1]))
    assert [sess.class_names[t] for t in sess.targets("test").tolist()] == [
        f.split("/")[0] for f in files
    ]
    k = sess.concept_index("watermark")
    assert torch.equal(sess.groups("test"), sess.targets("test") * 2 + sess.concepts("test")[:, k])
    thumbs = sess.thumbnails([0], "test", size=None)
    decoded = np.asarray(Image.open(__import__("io").BytesIO(thumbs[0])).convert("RGB"))
    assert np.array_equal(decoded, np.asarray(Image.open(root / files[0]).convert("RGB")))


def test_invert_runs_on_the_folder_concepts(folder):
    root, _ = folder
    bundle = image_folder(root, root / "concepts.csv", fractions=(0.5, 0, 0.5))
    sess = rw.Session(_model(), bundle, device="cpu", progress=False)
    r = rw.invert.explain(sess, "0", max_length=1, beam_size=2, split="test")
    frame = r.to_frame()
    assert len(frame) == 6
    # each neuron's formula is one of the table's concepts (possibly negated)
    for formula in frame["formula"]:
        assert str(formula).replace("NOT ", "").strip("() ") in bundle.concept_names
