# The livechat image: the one binary on Debian, run as an unprivileged user.
#
#   docker build -t livechat .
#   docker run -d -p 127.0.0.1:8080:8080 -v livechat-data:/data -v ./bots:/bots livechat
#
# Settings by environment (docs/operations.md): LIVECHAT_ADMIN_TOKEN, LIVECHAT_METRICS_TOKEN,
# LIVECHAT_TRUSTED_PROXIES, LIVECHAT_LOG; the rest (public_url, smtp, …) from a settings
# file: mount it and set LIVECHAT_CONFIG=/etc/livechat/livechat.toml. /bots starts as the
# example bundle; /data holds the database.
#
# BUILDER and BASE name the images the stages start from; packaging/container-check.sh
# builds with images it makes from Debian packages, where no registry is reachable.
ARG BUILDER=docker.io/library/rust:1-bookworm
ARG BASE=docker.io/library/debian:bookworm-slim

FROM ${BUILDER} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin livechat \
    && install -D -m 0755 target/release/livechat /out/livechat

FROM ${BASE}
RUN groupadd --system --gid 10001 livechat \
    && useradd --system --uid 10001 --gid livechat --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin livechat \
    && mkdir -p /data /bots \
    && chown livechat:livechat /data /bots
COPY --from=build /out/livechat /usr/local/bin/livechat
COPY --chown=livechat:livechat examples/bots/ /bots/
ENV LIVECHAT_LISTEN=0.0.0.0:8080 \
    LIVECHAT_DATA_DIR=/data \
    LIVECHAT_BOTS_DIR=/bots \
    LIVECHAT_LOG=info
VOLUME ["/data", "/bots"]
EXPOSE 8080
USER livechat
# `livechat healthcheck` asks /healthz at LIVECHAT_LISTEN: the image needs no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["livechat", "healthcheck"]
ENTRYPOINT ["livechat"]
CMD ["serve"]
