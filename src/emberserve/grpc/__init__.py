"""TorchServe's gRPC APIs (inference, management) and the Open Inference Protocol service.

The composition root calls :func:`start_grpc` once the services exist and ``GrpcServers.stop``
on shutdown; everything else here is internal. ``protos/`` holds Ember's own .proto files
(wire-compatible with TorchServe 0.12's) and ``generated/`` the stubs scripts/gen_protos.sh
makes from them.
"""

import os

# gRPC core's fork handlers are for children that go on using gRPC after fork(). Ember's worker
# processes are fork+exec'd and never touch gRPC, so the handlers only slow every worker start and
# log "skipping fork() handlers" while calls are in flight. Must be set before grpc is imported;
# an explicit setting from the environment wins.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

from emberserve.grpc.server import GrpcServers, GrpcSettings, start_grpc

__all__ = ["GrpcServers", "GrpcSettings", "start_grpc"]
