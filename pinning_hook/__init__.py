"""KubeVirt hook sidecar that pins each vCPU to the host CPU the user names.

The work is a pipeline of pure steps, each in its own module. `pinlist`
parses the user's entries, and `host` reads the host CPUs a pin may use with
their topology. `planning` decides each vCPU's cpuset, `policies` handles
the vCPUs left over, and `domainxml` writes the result into the domain's
`<cputune>`. `rewrite` chains them for one OnDefineDomain call.
The gRPC `server` and the `cli` are thin adapters over `rewrite`.
"""

__version__ = "0.1.0"
