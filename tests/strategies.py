"""Hypothesis strategies shared by the codec tests: any event a codec must carry."""

from __future__ import annotations

from hypothesis import strategies as st

from eventkit import Event, EventType

# Any Unicode text UTF-8 can carry: newlines, controls, astral characters; no
# lone surrogates.
texts = st.text(st.characters(codec="utf-8"))
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite_floats | texts,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4)
    ),
    max_leaves=16,
)
events = st.builds(
    Event,
    type=st.sampled_from([str(t) for t in EventType]) | texts,
    data=texts,
    timestamp=finite_floats,
    sequence=st.integers(),
    run=texts,
    attrs=st.dictionaries(texts, json_values, max_size=6),
)
