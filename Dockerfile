# syntax=docker/dockerfile:1
#
# reactor-pool's container image: built in a Rust image, shipped as the binary alone on
# distroless (glibc and CA certificates, no shell, no package manager), running as an
# unprivileged user.
#
#   docker build -t reactor-pool:0.1.0 .
#   docker run --rm -p 7007:7007 reactor-pool:0.1.0
#   docker run --rm -p 7007:7007 -v "$PWD/my.toml:/etc/reactor-pool/config.toml:ro" \
#       reactor-pool:0.1.0 serve --config /etc/reactor-pool/config.toml
#
# Inside a container the server must listen on all interfaces (the default is loopback),
# hence the default command's --listen. SIGTERM (docker stop, a Kubernetes pod deletion)
# drains for shutdown_timeout (5 s by default): give `docker stop -t` more than that.

# --- build ---------------------------------------------------------------------------------
# The toolchain of Cargo.toml's rust-version or newer; bookworm matches the runtime's glibc.
FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own, so a source change does not rebuild them: stub
# crates with the real manifests and lock file. The workspace's other member (crates/bench,
# the load generator) only needs to exist: the image ships the server alone.
COPY Cargo.toml Cargo.lock ./
COPY crates/bench/Cargo.toml crates/bench/
RUN mkdir -p src benches crates/bench/src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/echo.rs \
    && echo 'fn main() {}' > crates/bench/src/main.rs \
    && touch crates/bench/src/lib.rs \
    && cargo build --release --locked -p reactor-pool --bin reactor-pool \
    && rm -rf src
COPY src ./src
# config.rs embeds the example file in a unit test; the release build does not read it, but
# keep the tree as cargo expects it.
COPY config.example.toml ./
# touch: COPY keeps the files' own times, which may be older than the stub's build.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked -p reactor-pool --bin reactor-pool \
    && install -D -m 0755 target/release/reactor-pool /out/reactor-pool

# --- runtime -------------------------------------------------------------------------------
# cc: glibc and libgcc_s, which the Rust binary links dynamically; :nonroot runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/reactor-pool /usr/local/bin/reactor-pool
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
EXPOSE 7007 9707
ENTRYPOINT ["/usr/local/bin/reactor-pool"]
CMD ["serve", "--listen", "0.0.0.0:7007"]
