package images

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cavaliergopher/cpio"
	"golang.org/x/crypto/ssh"
)

// entry is one file of the initramfs.
type entry struct {
	mode cpio.FileMode
	data []byte
	link string
}

type initramfs struct {
	stage   string
	entries map[string]entry
}

// usrMerged are the top-level directories that are symlinks into /usr in the guest
// (merged /usr, as Debian has since bookworm): files of packages from any suite land on
// one canonical path, so a newer suite's library replaces the older one instead of
// hiding behind it in the loader's search order.
var usrMerged = []string{"bin", "sbin", "lib", "lib64"}

// canonical maps /bin/x, /sbin/x, /lib/x, /lib64/x to /usr/….
func canonical(name string) string {
	for _, d := range usrMerged {
		if name == "/"+d || strings.HasPrefix(name, "/"+d+"/") {
			return "/usr" + name
		}
	}
	return name
}

func (r *initramfs) add(name string, mode cpio.FileMode, data []byte) {
	if r.entries == nil {
		r.entries = map[string]entry{}
	}
	name = canonical(name)
	r.mkdirs(path.Dir(name))
	r.entries[name] = entry{mode: mode, data: data}
}

// mergedUsr adds the /bin -> usr/bin style links.
func (r *initramfs) mergedUsr() {
	for _, d := range usrMerged {
		r.mkdirs("/usr/" + d)
		r.entries["/"+d] = entry{mode: cpio.TypeSymlink | 0o777, link: "usr/" + d}
	}
}

func (r *initramfs) mkdirs(dir string) {
	if r.entries == nil {
		r.entries = map[string]entry{}
	}
	dir = canonical(dir)
	for dir != "/" && dir != "." {
		if _, ok := r.entries[dir]; !ok {
			r.entries[dir] = entry{mode: cpio.TypeDir | 0o755}
		}
		dir = path.Dir(dir)
	}
}

func (r *initramfs) symlink(name, target string) {
	name = canonical(name)
	r.mkdirs(path.Dir(name))
	r.entries[name] = entry{mode: cpio.TypeSymlink | 0o777, link: target}
}

// addFromStage copies a staged file, following symlinks inside the stage and keeping
// the link too so the loader finds libraries by either name.
func (r *initramfs) addFromStage(p string) error {
	for i := 0; i < 10; i++ {
		p = stagePath(r.stage, p)
		full := filepath.Join(r.stage, p)
		st, err := os.Lstat(full)
		if err != nil {
			return err
		}
		if st.Mode()&fs.ModeSymlink == 0 {
			data, err := os.ReadFile(full)
			if err != nil {
				return err
			}
			r.add(p, cpio.FileMode(st.Mode().Perm()), data)
			return nil
		}
		target, err := os.Readlink(full)
		if err != nil {
			return err
		}
		r.symlink(p, target)
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(p), target)
		}
		p = target
	}
	return fmt.Errorf("%s: too many symlinks", p)
}

func (r *initramfs) assemble(t *Target, modules []string, hostKey []byte, client ssh.PublicKey) error {
	r.entries = map[string]entry{}
	r.mergedUsr()
	for _, d := range []string{"/usr/bin", "/usr/sbin", "/proc", "/sys", "/dev", "/tmp", "/run", "/mnt", "/var/log"} {
		r.mkdirs(d)
	}
	initScript, err := recipeFS.ReadFile("init.sh")
	if err != nil {
		return err
	}
	r.add("/init", 0o755, initScript)
	bins := []string{"/bin/busybox", "/usr/sbin/dropbear", "/usr/bin/dropbearkey", "/usr/bin/scp", "/usr/lib/openssh/sftp-server"}
	files, err := ELFClosure(r.stage, t.LibDirs(), bins)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := r.addFromStage(f); err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
	}
	// Debian's dropbear looks for the SFTP server here (OpenSSH 9's scp speaks SFTP).
	r.symlink("/usr/lib/sftp-server", "openssh/sftp-server")
	var list strings.Builder
	tree := path.Join("/lib/modules", t.Kernel.Release)
	for _, m := range modules {
		data, err := ReadModule(filepath.Join(ModulesTree(r.stage, t.Kernel.Release), m))
		if err != nil {
			return err
		}
		dst := path.Join(tree, stripCompression(m))
		r.add(dst, 0o644, data)
		fmt.Fprintln(&list, dst)
	}
	r.add("/etc/kmodlab/modules", 0o644, []byte(list.String()))
	r.add("/etc/dropbear/dropbear_ed25519_host_key", 0o600, hostKey)
	r.add("/root/.ssh/authorized_keys", 0o600, ssh.MarshalAuthorizedKey(client))
	r.entries["/root"] = entry{mode: cpio.TypeDir | 0o700}
	r.entries["/root/.ssh"] = entry{mode: cpio.TypeDir | 0o700}
	r.add("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"))
	r.add("/etc/group", 0o644, []byte("root:x:0:\n"))
	r.add("/etc/shadow", 0o600, []byte("root:*:19000:0:99999:7:::\n"))
	r.add("/etc/shells", 0o644, []byte("/bin/sh\n/bin/ash\n"))
	r.add("/etc/inittab", 0o644, []byte("::shutdown:/bin/sync\n::shutdown:/bin/umount -a -r\n"))
	r.add("/etc/profile", 0o644, []byte("export PATH=/sbin:/bin:/usr/sbin:/usr/bin\n"))
	return nil
}

// write emits the archive (newc, root-owned, fixed times so equal inputs give equal bytes).
func (r *initramfs) write(file string) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	// Uncompressed: under TCG, gunzip in the guest costs about a second of boot; QEMU
	// copies a plain archive into guest memory in no time.
	bw := bufio.NewWriterSize(f, 1<<20)
	w := cpio.NewWriter(bw)
	names := make([]string, 0, len(r.entries))
	for n := range r.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	mtime := time.Unix(1700000000, 0)
	for _, n := range names {
		e := r.entries[n]
		h := &cpio.Header{Name: strings.TrimPrefix(n, "/"), Mode: e.mode, ModTime: mtime}
		body := e.data
		if e.mode&cpio.ModeType == cpio.TypeSymlink {
			body = []byte(e.link)
		}
		if e.mode&cpio.ModeType == cpio.TypeDir {
			h.Links = 2
			body = nil
		}
		h.Size = int64(len(body))
		if err := w.WriteHeader(h); err != nil {
			return err
		}
		if _, err := w.Write(body); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}
