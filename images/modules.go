package images

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// ResolveModules finds the named modules under a modules tree and returns their paths
// (relative to the tree) with every dependency first, from each module's .modinfo depends=.
func ResolveModules(tree string, names []string) ([]string, error) {
	index := map[string]string{}
	err := filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err == nil && isModuleFile(p) {
			index[modName(filepath.Base(p))] = p
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("modules: %w", err)
	}
	builtin := Builtin(tree)
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name, from string) error
	visit = func(name, from string) error {
		name = modName(name)
		switch state[name] {
		case 1:
			return fmt.Errorf("module %s: dependency cycle", name)
		case 2:
			return nil
		}
		p, ok := index[name]
		if !ok && builtin[name] {
			state[name] = 2 // built into this kernel (another line may have it as a module)
			return nil
		}
		if !ok {
			if from != "" {
				return fmt.Errorf("module %s (needed by %s) not found under %s", name, from, tree)
			}
			return fmt.Errorf("module %s not found under %s (is it built in? then drop it from the recipe's modules)", name, tree)
		}
		state[name] = 1
		deps, err := ModuleDepends(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		state[name] = 2
		rel, _ := filepath.Rel(tree, p)
		order = append(order, rel)
		return nil
	}
	for _, n := range names {
		if err := visit(n, ""); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// Builtin reads the modules.builtin list of a modules tree (names, "-" as "_").
func Builtin(tree string) map[string]bool {
	b := map[string]bool{}
	data, _ := os.ReadFile(filepath.Join(tree, "modules.builtin"))
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			b[modName(path.Base(l))] = true
		}
	}
	return b
}

func modName(file string) string {
	return strings.ReplaceAll(strings.TrimSuffix(stripCompression(file), ".ko"), "-", "_")
}

var moduleSuffixes = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

func isModuleFile(p string) bool {
	for _, s := range moduleSuffixes {
		if strings.HasSuffix(p, s) {
			return true
		}
	}
	return false
}

// stripCompression turns x.ko.xz into x.ko.
func stripCompression(p string) string {
	for _, s := range []string{".xz", ".zst", ".gz"} {
		if strings.HasSuffix(p, ".ko"+s) {
			return strings.TrimSuffix(p, s)
		}
	}
	return p
}

// ReadModule returns a module file's ELF bytes, decompressing .ko.xz, .ko.zst and .ko.gz
// (newer Debian kernels ship compressed modules; busybox insmod wants plain ones).
func ReadModule(p string) ([]byte, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var tool string
	switch {
	case strings.HasSuffix(p, ".ko.xz"):
		tool = "xz"
	case strings.HasSuffix(p, ".ko.zst"):
		tool = "zstd"
	case strings.HasSuffix(p, ".ko.gz"):
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		return io.ReadAll(zr)
	default:
		return data, nil
	}
	cmd := exec.Command(tool, "-dc")
	cmd.Stdin = bytes.NewReader(data)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s -dc %s: %w: %s", tool, p, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out.Bytes(), nil
}

// ModuleDepends reads depends= from a module's .modinfo section.
func ModuleDepends(ko string) ([]string, error) {
	info, err := ModInfo(ko)
	if err != nil {
		return nil, err
	}
	var deps []string
	for _, d := range strings.Split(info["depends"], ",") {
		if d = strings.TrimSpace(d); d != "" {
			deps = append(deps, d)
		}
	}
	return deps, nil
}

// ModInfo returns a module's .modinfo key=value pairs (the last value of repeated keys).
func ModInfo(ko string) (map[string]string, error) {
	data, err := ReadModule(ko)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ko, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%s: no .modinfo section (not a kernel module?)", ko)
	}
	data, err = sec.Data()
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, kv := range strings.Split(string(data), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m, nil
}
