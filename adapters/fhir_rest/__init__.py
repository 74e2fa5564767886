"""Pull from a hospital FHIR R4 server: paged _lastUpdated searches with retries."""
