# custos image: the manager (entrypoint), the custos CLI, restic, pg_dump and psql.
#
#   docker build -t custos:dev .        (make image)
#
# Runs as uid 65532 with a read-only root filesystem: HOME, TMPDIR and the working directory are /tmp, which the
# chart mounts as an emptyDir next to the --work-dir volume.

# Go version: the one go.mod names. Everything is built with CGO_ENABLED=0 into static binaries.
ARG GO_VERSION=1.26
# restic: same pin as hack/tools.sh (RESTIC_VERSION), built from source through the Go module proxy.
ARG RESTIC_VERSION=v0.18.1

FROM golang:${GO_VERSION}-bookworm AS build
ARG RESTIC_VERSION
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
WORKDIR /src
# Built inside the module directory that `go mod download` fills, as hack/tools.sh does: `go install pkg@version`
# also asks the proxy for the module's version list, which a pinning proxy (or a mirror of only the pinned
# versions) may refuse.
RUN dir=$(go mod download -json github.com/restic/restic@${RESTIC_VERSION} | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') \
 && test -d "$dir" \
 && cd "$dir" && GOFLAGS="$GOFLAGS -mod=mod" go build -trimpath -ldflags "-s -w" -o /out/restic ./cmd/restic
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
RUN go build -trimpath -ldflags "-s -w" -o /out/custos-manager ./cmd/manager \
 && go build -trimpath -ldflags "-s -w" -o /out/custos ./cmd/custos

FROM debian:bookworm-slim
# PostgreSQL client 15 (Debian bookworm's): pg_dump and psql of major 15 dump and restore servers of their own
# major version and older. Supported database servers: PostgreSQL 13, 14 and 15 (custos needs 13 or newer for
# DROP DATABASE … WITH (FORCE); the test suites run against 15). A server of major 16 or newer needs a pg_dump at
# least as new: build on this image with that version's client and pass --pg-dump and --psql.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates postgresql-client-15 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 custos \
 && useradd --uid 65532 --gid 65532 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin custos
COPY --from=build /out/restic /out/custos-manager /out/custos /usr/local/bin/
ENV HOME=/tmp TMPDIR=/tmp
WORKDIR /tmp
USER 65532:65532
# The Debian paths of the version-15 programs, not /usr/bin's pg_wrapper (a Perl script that picks a version).
ENTRYPOINT ["/usr/local/bin/custos-manager", \
            "--restic=/usr/local/bin/restic", \
            "--pg-dump=/usr/lib/postgresql/15/bin/pg_dump", \
            "--psql=/usr/lib/postgresql/15/bin/psql"]
