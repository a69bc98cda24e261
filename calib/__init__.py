"""int8 calibration: image folders -> batches, range methods, range cache. numpy + runtime only."""
