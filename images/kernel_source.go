package images

import "context"

// A kernelSource is where a target's kernel comes from: Debian's binary packages
// (kernel_debian.go), a kernel the lab builds from Debian's sources with config
// fragments (kernel_built.go), or the user's own build (kernel_own.go). The image builder and module builds see only this.
type kernelSource interface {
	// resolve fills t.Kernel's Release and Version where the recipe does not pin them
	// (a flavour's newest kernel, a built kernel's own version). It may build.
	resolve(ctx context.Context, b *Builder, t *Target) error
	// stage puts the compressed boot image and the kernel's modules tree (under
	// lib/modules or usr/lib/modules) into stage and returns the boot image's path and
	// what it was made of (package files, the source and fragments), for the manifest.
	stage(ctx context.Context, b *Builder, t *Target, stage string) (kernel string, parts []string, err error)
	// headers returns the tree an out-of-tree module is built against (make -C).
	headers(ctx context.Context, b *Builder, t *Target) (string, error)
	// key is what images and headers of this source depend on beyond the recipe.
	key(t *Target) string
}

// source returns the target's kernel source.
func (t *Target) source() kernelSource {
	if len(t.Fragments) == 1 && t.Fragments[0] == OwnSuffix {
		return ownKernel{}
	}
	if len(t.Fragments) > 0 {
		return builtKernel{}
	}
	return debianKernel{}
}
