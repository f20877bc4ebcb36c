FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin viewcast

FROM debian:bookworm-slim
COPY --from=build /src/target/release/viewcast /usr/local/bin/viewcast
EXPOSE 8080
ENTRYPOINT ["viewcast", "serve"]
