"""The only modules that talk to the outside: MongoDB, S3, the Kubernetes API."""
