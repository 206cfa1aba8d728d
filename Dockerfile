# Build: docker build -t gamemetrics:local .
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev zlib1g-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin gamemetrics

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 gamemetrics
COPY --from=build /src/target/release/gamemetrics /usr/local/bin/gamemetrics
USER 10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/gamemetrics"]
CMD ["serve"]
