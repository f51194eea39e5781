package images

import (
	"debug/elf"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
)

// ELFClosure returns, for the given executables (paths inside root), every file they need
// at run time: the program interpreter and the DT_NEEDED libraries, transitively, as
// paths inside root, looking for libraries in dirs (Target.LibDirs). A library that
// cannot be found is an error naming who needs it.
func ELFClosure(root string, dirs []string, bins []string) ([]string, error) {
	if len(dirs) == 0 {
		return nil, fmt.Errorf("no library directories to look in")
	}
	seen := map[string]bool{}
	loaders := map[string]bool{} // the program interpreters' names: libc names its loader
	var out []string
	queue := append([]string(nil), bins...)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		p = stagePath(root, p)
		out = append(out, p)
		interp, needed, err := elfDeps(resolveIn(root, p))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if interp != "" {
			queue = append(queue, interp)
			loaders[path.Base(interp)] = true
		}
		for _, lib := range needed {
			if loaders[lib] {
				continue // the loader itself, wherever it lives (/lib64 on amd64)
			}
			found := ""
			for _, d := range dirs {
				if _, err := os.Lstat(filepath.Join(root, stagePath(root, path.Join(d, lib)))); err == nil {
					found = stagePath(root, path.Join(d, lib))
					break
				}
			}
			if found == "" {
				return nil, fmt.Errorf("%s needs %s, which no unpacked package provides (add its package to the recipe's userland)", p, lib)
			}
			queue = append(queue, found)
		}
	}
	sort.Strings(out)
	return out, nil
}

// elfDeps reads PT_INTERP and DT_NEEDED; a static binary has neither.
func elfDeps(file string) (interp string, needed []string, err error) {
	f, err := elf.Open(file)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return "", nil, err
			}
			for len(b) > 0 && b[len(b)-1] == 0 {
				b = b[:len(b)-1]
			}
			interp = string(b)
		}
	}
	needed, err = f.ImportedLibraries()
	if err != nil && f.Section(".dynamic") == nil {
		err = nil // static
	}
	return interp, needed, err
}

// stagePath is p, or /usr/p when only that exists: a merged-/usr package (trixie on)
// ships /usr/lib/ld-linux-armhf.so.3 while its binaries name /lib/ld-linux-armhf.so.3.
func stagePath(root, p string) string {
	if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
		return p
	}
	if c := canonical(p); c != p {
		if _, err := os.Lstat(filepath.Join(root, c)); err == nil {
			return c
		}
	}
	return p
}

// resolveIn follows symlinks of p as if root were "/", so absolute links in unpacked
// packages never resolve to the host's own files.
func resolveIn(root, p string) string {
	for i := 0; i < 10; i++ {
		p = stagePath(root, p)
		full := filepath.Join(root, p)
		target, err := os.Readlink(full)
		if err != nil {
			return full
		}
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(p), target)
		}
		p = target
	}
	return filepath.Join(root, p)
}
