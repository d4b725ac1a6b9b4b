"""The concept discovery view: a ConceptBrowser over the result's 2-D map."""

from __future__ import annotations

import numpy as np
import pytest
import traitlets
from test_concepts import _tiny_session

from repwidgets.engines import concepts as cd
from repwidgets.views.concepts import concepts_view
from repwidgets.widgets import ConceptBrowser
from repwidgets.widgets._transport import decode_array, decode_image_batch


def test_concept_browser_from_a_result():
    sess = _tiny_session()
    r = cd.discover(sess, "relu", n_components=3, top_t=30, embedding="pca")
    b = r.widget()
    assert isinstance(b, ConceptBrowser) and b.n == sess.n()
    wire = b.get_state(["points", "codes"])
    xy = decode_array(wire["points"]["xy"]["buffer"], "float32", wire["points"]["xy"]["shape"])
    np.testing.assert_allclose(xy, r.embedding.numpy())
    np.testing.assert_allclose(b.points["xy"], r.embedding.numpy())  # read back as arrays
    member = wire["points"]["membership"]
    np.testing.assert_array_equal(
        decode_array(member["buffer"], member["dtype"], member["shape"]), r.assignment.numpy()
    )
    np.testing.assert_array_equal(b.points["membership"], r.assignment.numpy())
    assert b.coloring_names[:3] == ["concept", "class", "predicted"]
    codes = decode_array(wire["codes"]["buffer"], wire["codes"]["dtype"], wire["codes"]["shape"])
    np.testing.assert_array_equal(codes, r.assignment.numpy() + 1)
    b.color_by = "class"  # Python recomputes the codes on screen
    np.testing.assert_array_equal(b.codes, sess.targets().numpy())
    b.selected = [3, 1, 3]
    frame = b.selected_frame()
    assert frame["index"].tolist() == [3, 1]
    assert frame["class"].tolist() == [sess.class_names[int(sess.targets()[i])] for i in (3, 1)]
    # the browser asks for thumbnails by sample index; they are the session's
    sent = []
    b.send = lambda content, buffers=None: sent.append((content, buffers))
    b._router.handle({"type": "fetch", "request_id": "x", "keys": [7, 2]}, [])
    content, buffers = sent[-1]
    assert content["ok"] and content["keys"] == [7, 2]
    assert decode_image_batch(content, buffers[0]) == sess.thumbnails([7, 2], size=64)
    assert b.clusters[0]["images"] == r.top_samples(0, 16).tolist()

    with pytest.raises(traitlets.TraitError, match="not points of this browser"):
        b.selected = [10_000]
    with pytest.raises(traitlets.TraitError, match="not a colouring"):
        b.color_by = "nope"
    # without a session: no images, the same map
    r._session = None
    bare = concepts_view(r)
    assert bare._image_source is None and bare.n == b.n
    assert concepts_view(r, session=sess)._image_source is not None
    r.embedding = None
    with pytest.raises(ValueError, match="embedding='umap'"):
        r.widget()
