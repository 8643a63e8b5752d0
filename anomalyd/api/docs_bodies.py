"""What /openapi.json says of request bodies beyond their msgspec types: the checks
the responders make once msgspec has decoded a body, every timestamp form, CSV bodies
and the detector of a CSV fit in the query. Used by ``anomalyd.api.docs``."""

from __future__ import annotations

from typing import Any

import msgspec

from anomalyd import schemas


def add_checks_made_after_decoding(components: dict[str, Any], min_points: int) -> None:
    """Constraints the responders check once msgspec has decoded a body (422 when not
    met), added to msgspec's schemas so that the document promises no more than the
    service accepts. Equal lengths, finite values and a non-zero spread cannot be said
    in JSON Schema; the 422 description names them."""
    fit = components["FitRequest"]["properties"]
    batch = components["BatchPredictRequest"]["properties"]
    for field in ("timestamps", "values"):
        fit[field]["minItems"] = min_points
        batch[field]["minItems"] = 1
    components["DetectorParams"]["properties"]["k"]["exclusiveMinimum"] = 0
    components["PredictRequest"]["properties"]["timestamp"] = _timestamp("$.timestamp")
    for request in (fit, batch):
        request["timestamps"]["items"] = _timestamp("each timestamp")


def _timestamp(what: str) -> dict[str, Any]:
    """The forms anomalyd.timestamps accepts (numbers range-checked by msgspec)."""
    return {
        "anyOf": [
            {"type": "integer", "minimum": 0, "maximum": schemas.MAX_TIMESTAMP},
            {
                "type": "number",
                "minimum": 0,
                "exclusiveMaximum": schemas.MAX_TIMESTAMP + 1,
            },
            {"type": "string", "pattern": r"^[0-9]{1,12}(\.[0-9]+)?$"},
            {"type": "string", "format": "date-time"},
        ],
        "description": (
            f"{what}: Unix seconds (an integer, a number with a fraction, or a "
            "string of digits with an optional fraction) or an ISO-8601 date-time "
            "(UTC when it has no offset). A fraction of a second is cut: "
            "timestamps are stored as whole seconds."
        ),
    }


# A CSV body of fit and batch predict: a header naming the columns, one point a line.
CSV_BODY = {
    "type": "string",
    "description": "CSV: a header line 'timestamp,value' (either order), then one "
    "point per line; timestamps in any form a JSON body takes. A fit takes its "
    "detector from the query (?kind=&k=&direction=).",
}


def detector_query() -> list[dict[str, Any]]:
    """?kind=&k=&direction= of a CSV fit, from the detector's own schema."""
    detector = msgspec.json.schema(schemas.DetectorParams)["$defs"]["DetectorParams"]
    detector["properties"]["k"]["exclusiveMinimum"] = 0
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": f"The detector's {name} for a CSV body (a JSON body gives "
            "it in its detector object; with a JSON body this is a 400).",
            "schema": {key: value for key, value in schema.items() if key != "default"},
        }
        for name, schema in detector["properties"].items()
    ]
