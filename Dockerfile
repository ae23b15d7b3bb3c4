# The podid image: /podid (server, CLI) and /podid-agent (the node agent,
# built without the Kubernetes client libraries). The Helm chart runs both.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/podid/podid/internal/version.Version=${VERSION}" -o /out/podid ./cmd/podid \
 && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/podid/podid/internal/version.Version=${VERSION}" -o /out/podid-agent ./cmd/podid-agent

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/podid /out/podid-agent /
USER 65532:65532
ENTRYPOINT ["/podid"]
