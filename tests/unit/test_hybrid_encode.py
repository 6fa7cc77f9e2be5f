"""The hybrid model's two input encoders (pandas for the pyfunc, Arrow for Spark) agree."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from shoprec import columns as C
from shoprec.hybrid import features as H

MANIFEST = {
    "vocab": {
        C.USER_ID: ["u1", "u2"],
        C.ITEM_ID: ["A", "B", "C"],
        C.COUNTRY: ["France", "United Kingdom"],
        C.DEVICE: ["mobile"],
        C.SEASON: ["autumn", "winter"],
        C.CATEGORY: ["cups"],
    },
    "sizes": {"price_band": 6},
    "text_dim": 3,
}


def _frame() -> pd.DataFrame:
    # Known and unknown ids, nulls everywhere a column allows them, out-of-range small ints,
    # text vectors missing or of the wrong length.
    return pd.DataFrame(
        {
            C.USER_ID: ["u2", "nobody", "u1", None],
            C.ITEM_ID: ["C", "A", "zzz", "B"],
            C.COUNTRY: ["United Kingdom", None, "Narnia", "France"],
            C.DEVICE: [None, "mobile", "tv", None],
            C.SEASON: ["winter", "autumn", None, "spring"],
            C.CATEGORY: ["cups", None, "cups", "plates"],
            C.HOUR: [23, 0, None, 30],
            C.WEEKDAY: [1, 7, None, -1],
            C.PRICE_BAND: [5, 6, None, 0],
            C.DAYS_TO_HOLIDAY: [3.0, None, 400.0, -2.0],
            C.TEXT_VECTOR: [[0.1, 0.2, 0.3], None, [1.0, 2.0], [-1.0, 0.0, 1.0]],
            C.PAIR_PURCHASES: [2, 0, None, 1],
            C.PAIR_DAYS_SINCE: [3.5, None, 1000.0, 0.0],
            C.USER_PURCHASES: [7, 1, None, 3],
            C.USER_DAYS_SINCE: [1.0, None, 20.0, 2.0],
        }
    )


def test_arrow_encoding_equals_pandas_encoding():
    pdf = _frame()
    batch = pa.RecordBatch.from_pandas(pdf, preserve_index=False)
    from_pandas = H.encode(pdf, MANIFEST)
    from_arrow = H.encode_arrow(batch, MANIFEST, H.arrow_vocabularies(MANIFEST))
    assert sorted(from_arrow) == sorted(from_pandas) == sorted(H.INPUTS)
    for name in H.INPUTS:
        assert from_arrow[name].dtype == from_pandas[name].dtype, name
        np.testing.assert_array_equal(from_arrow[name], from_pandas[name], err_msg=name)
    # Spelled out for the ids: vocabulary position + 1, 0 for unknown and null.
    assert from_arrow["user"].tolist() == [2, 0, 1, 0] and from_arrow["item"].tolist() == [3, 1, 0, 2]
    assert from_arrow["text_vector"][2].tolist() == [0, 0, 0] and from_arrow["hour"].tolist() == [24, 1, 0, 0]


def test_arrow_encoding_of_a_slice_reads_the_right_text_vectors():
    batch = pa.RecordBatch.from_pandas(_frame(), preserve_index=False).slice(2, 2)
    out = H.encode_arrow(batch, MANIFEST, H.arrow_vocabularies(MANIFEST))
    np.testing.assert_array_equal(out["text_vector"], np.array([[0, 0, 0], [-1, 0, 1]], dtype=np.float32))
