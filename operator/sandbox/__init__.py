"""Running optimizer outputs in a real Triton for checks (the python-backend adapter)."""
