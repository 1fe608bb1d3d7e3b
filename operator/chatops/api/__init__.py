"""The API of chatops: pydantic models of the three resources, and their CRDs."""
