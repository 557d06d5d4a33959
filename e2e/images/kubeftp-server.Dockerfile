# The kubeftp-server image. Build it from the repository root:
#
#   docker build -f e2e/images/kubeftp-server.Dockerfile -t kubeftp/kubeftp-server:0.1.0 .
#
# e2e/images/build.sh makes the same image without a container engine for
# the local cluster: the release binary and its C libraries on a
# distroless-like root, with the USER, ENTRYPOINT and binary path read from
# the final stage below. Keep that stage to those instructions.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p kubeftp-server \
 && cp target/release/kubeftp-server /kubeftp-server

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /kubeftp-server /usr/local/bin/kubeftp-server
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kubeftp-server"]
