"""Generated protobuf and gRPC code for the Oort protocol (see gen.sh). Do not edit."""
