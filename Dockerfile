# The release image: the static binary that scripts/release built, checksummed and described in
# its SBOM (dist/kserve-keda-webhook-linux-<arch>), on distroless static: no shell, no libc.
# After scripts/release (which prints this command with the values filled in):
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=<Cargo.toml version> --build-arg REVISION=<git commit> -t <image> .
#
# Pinned by the digest of the multi-arch index of gcr.io/distroless/static-debian12:nonroot, so
# a rebuild of a commit gets the same base. To move it: crane digest <that reference>.
FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
# Set by BuildKit for each platform being built: amd64, arm64.
ARG TARGETARCH
ARG VERSION
ARG REVISION
LABEL org.opencontainers.image.title="kserve-keda-webhook" \
      org.opencontainers.image.description="Admission webhook and controller that scale KServe InferenceServices with KEDA on model-server metrics" \
      org.opencontainers.image.source="https://github.com/kserve-keda-webhook/kserve-keda-webhook" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# The file mode (0755) comes from dist/, so the final image needs no RUN and no shell.
COPY dist/kserve-keda-webhook-linux-${TARGETARCH} /kserve-keda-webhook
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/kserve-keda-webhook"]
CMD ["serve"]
