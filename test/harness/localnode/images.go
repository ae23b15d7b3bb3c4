package localnode

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Image is an image built from Go programs of the podid module: one layer
// holding each program, statically linked, at its path.
type Image struct {
	// Ref is the image's name, e.g. localnode.podid.io/podid:dev. Pods
	// name it with a tag other than latest, so the kubelet never pulls it.
	Ref string
	// Programs maps a path in the image (/podid) to a main package of the
	// module (./cmd/podid).
	Programs map[string]string
	// Entrypoint and User are the image's configuration.
	Entrypoint []string
	User       string
	// LDFlags are extra linker flags, e.g. a version stamp.
	LDFlags string
}

// pauseImageSpec is the pods' sandbox image: a Go "pause" (sleep, reap,
// exit on SIGTERM).
func pauseImageSpec() Image {
	return Image{Ref: pauseImage, Programs: map[string]string{"/pause": "./test/harness/localnode/pause"}, Entrypoint: []string{"/pause"}, User: "65535:65535"}
}

// ModuleRoot is the directory of the podid module's go.mod, found from the
// working directory.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w (building images needs the Go toolchain)", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("building images needs the podid module: run from inside its checkout")
	}
	return filepath.Dir(mod), nil
}

// buildImages compiles the images' programs and writes each image as a
// docker-archive tarball <dir>/<n>.tar.
func buildImages(ctx context.Context, dir string, images []Image) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i, img := range images {
		binDir := filepath.Join(dir, fmt.Sprintf("bin-%d", i))
		if err := os.MkdirAll(binDir, 0o755); err != nil {
			return err
		}
		pkgs := make([]string, 0, len(img.Programs))
		for _, pkg := range img.Programs {
			pkgs = append(pkgs, pkg)
		}
		sort.Strings(pkgs)
		args := []string{"build", "-trimpath", "-ldflags=-s -w " + img.LDFlags, "-o", binDir + "/"}
		cmd := exec.CommandContext(ctx, "go", append(args, pkgs...)...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building %s's programs: %w: %s", img.Ref, err, out)
		}
		files := map[string]string{}
		for at, pkg := range img.Programs {
			files[at] = filepath.Join(binDir, path.Base(pkg))
		}
		if err := writeImage(filepath.Join(dir, fmt.Sprintf("%d.tar", i)), img, files); err != nil {
			return fmt.Errorf("writing image %s: %w", img.Ref, err)
		}
	}
	return nil
}

// writeImage writes img, with files (path in image → file on disk), as a
// docker-archive tarball.
func writeImage(out string, img Image, files map[string]string) error {
	ref, err := name.NewTag(img.Ref)
	if err != nil {
		return err
	}
	var layerTar bytes.Buffer
	tw := tar.NewWriter(&layerTar)
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		data, err := os.ReadFile(files[p])
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: strings.TrimPrefix(p, "/"), Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	// /tmp for programs that want one, writable by anyone, as in distroless.
	if err := tw.WriteHeader(&tar.Header{Name: "tmp/", Mode: 0o1777, Typeflag: tar.TypeDir, ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	data := layerTar.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return err
	}
	image, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cf, err := image.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config = v1.Config{Entrypoint: img.Entrypoint, User: img.User, Env: []string{"PATH=/"}}
	if image, err = mutate.ConfigFile(image, cf); err != nil {
		return err
	}
	return tarball.WriteToFile(out, ref, image)
}

// importImages imports the built tarballs into containerd's CRI namespace.
func (n *Node) importImages(ctx context.Context, images []Image) error {
	for i, img := range images {
		file := filepath.Join(n.Dir, "images", fmt.Sprintf("%d.tar", i))
		cmd := exec.CommandContext(ctx, filepath.Join(n.bin, "ctr"), "--address", n.containerdSocket(), "-n", "k8s.io",
			"images", "import", "--digests", "--platform", "linux/"+runtime.GOARCH, file)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("importing %s: %w: %s", img.Ref, err, out)
		}
	}
	return nil
}
