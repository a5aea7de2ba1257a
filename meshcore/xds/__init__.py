"""Generic xDS server machinery: resources, snapshots, and the ADS/per-type streams."""
