"""FlowReport -> FlowAttribution: the operator's pure side (spec, windows, periods, idempotent merges)."""
