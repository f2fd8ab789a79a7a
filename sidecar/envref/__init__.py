"""Values in the environment with no code change (README, "Values in the environment").

CloudFormation's dynamic references (``{{resolve:ssm:/app/db/host}}``) in environment variables
and template files are read through the daemon's HTTP API, as any client of it would: this
package is a client, never a second cache. The Lambda exec wrapper's path (``wrapper``,
``resolve``, ``client``, ``references``, ``options``) is standard library only, so that it
starts in a few milliseconds; ``command`` (``exec``) adds the supervisor, templates and the
in-process daemon of ``--standalone``.
"""
