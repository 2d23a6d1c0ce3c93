//! Loading resources from NDJSON files and FHIR Bundles.
