FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin viewcast

FROM debian:bookworm-slim
# Views evaluate timestamptz in the role's TimeZone, read from the system's
# tz database (as Debian's PostgreSQL reads it).
RUN apt-get update && apt-get install -y --no-install-recommends tzdata \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/viewcast /usr/local/bin/viewcast
EXPOSE 8080
ENTRYPOINT ["viewcast", "serve"]
