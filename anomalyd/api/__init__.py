"""HTTP resources, one module per resource. Responders decode, call the domain, encode."""
