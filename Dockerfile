# The podid image: /podid (server, CLI), /podid-agent (the node agent) and
# /podid-credential-provider (the kubelet plugin the agent DaemonSet installs
# on nodes), the last two built without the Kubernetes client libraries.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/podid/podid/internal/version.Version=${VERSION}" -o /out/podid ./cmd/podid \
 && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/podid/podid/internal/version.Version=${VERSION}" -o /out/podid-agent ./cmd/podid-agent \
 && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/podid/podid/internal/version.Version=${VERSION}" -o /out/podid-credential-provider ./cmd/podid-credential-provider

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/podid /out/podid-agent /out/podid-credential-provider /
USER 65532:65532
ENTRYPOINT ["/podid"]
