package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// scripts/ci-action.sh hands a shard's args to kmodlab one array element each: an
// argument with a space or a newline is never split into two (a value holding
// "\n--out /elsewhere" became its own arguments), and control characters are refused.
func TestCIActionShardArgs(t *testing.T) {
	if _, err := exec.LookPath("jq"); err != nil {
		t.Skip("no jq")
	}
	dir := t.TempDir()
	args := filepath.Join(dir, "args")
	fake := filepath.Join(dir, "kmodlab")
	os.WriteFile(fake, []byte("#!/bin/sh\nfor a; do printf '[%s]\\n' \"$a\"; done > "+args+"\n"), 0o755)
	run := func(shard string) (string, error) {
		os.Remove(args)
		cmd := exec.Command("bash", "../../scripts/ci-action.sh", "shard")
		cmd.Env = append(os.Environ(), "KMODLAB="+fake, "INPUT_JOB=j.yaml", "INPUT_SHARD="+shard, "INPUT_OUT="+filepath.Join(dir, "out"),
			"GITHUB_OUTPUT="+filepath.Join(dir, "output"))
		out, err := cmd.CombinedOutput()
		got, _ := os.ReadFile(args)
		if err != nil {
			return string(out), err
		}
		return string(got), nil
	}
	got, err := run(`{"name":"x86_64","args":["--cell","x86_64/a b","--seed","7"]}`)
	if want := "[run]\n[j.yaml]\n[--out]\n[" + filepath.Join(dir, "out") + "]\n[--cell]\n[x86_64/a b]\n[--seed]\n[7]\n"; err != nil || got != want {
		t.Errorf("args: %v\n%s\nwant\n%s", err, got, want)
	}
	got, err = run(`{"name":"x86_64","args":["--cell","x86_64/a\n--out /elsewhere"]}`)
	if err == nil || !strings.Contains(got, "control characters") {
		t.Errorf("an argument with a newline: %v %q", err, got)
	}
}

// scripts/ci-lab.sh hands the cache and the reports to the runner's user (the owner of
// the checkout) at exit. It must not open the private key or the images' host keys to
// every user (its chmod -R a+rX left keys/id_ed25519 0644).
func TestCILabShareKeepsSecretsPrivate(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("chown needs root")
	}
	script, err := os.ReadFile("../../scripts/ci-lab.sh")
	if err != nil {
		t.Fatal(err)
	}
	fn := regexp.MustCompile(`(?ms)^share\(\) \{$.*?^\}$|^share\(\) \{[^\n]*\}$`).Find(script)
	if fn == nil {
		t.Fatal("no share() in ci-lab.sh")
	}
	dir := t.TempDir()
	checkout := filepath.Join(dir, "checkout")
	cache := filepath.Join(checkout, ".cache", "kmodlab")
	os.MkdirAll(filepath.Join(cache, "keys"), 0o700)
	os.MkdirAll(filepath.Join(cache, "images", "x"), 0o755)
	key := filepath.Join(cache, "keys", "id_ed25519")
	initrd := filepath.Join(cache, "images", "x", "initramfs.cpio")
	os.WriteFile(key, []byte("k"), 0o600)
	os.WriteFile(initrd, []byte("i"), 0o600)
	os.Chown(checkout, 1001, 1002) // the runner's user owns the checkout
	cmd := exec.Command("bash", "-c", string(fn)+"\nshare")
	cmd.Dir = checkout
	cmd.Env = append(os.Environ(), "KMODLAB_CACHE="+cache)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("share: %v: %s", err, out)
	}
	for _, p := range []string{key, initrd, filepath.Join(cache, "keys")} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %04o: readable by others", p, st.Mode().Perm())
		}
		if s := st.Sys().(*syscall.Stat_t); s.Uid != 1001 || s.Gid != 1002 {
			t.Errorf("%s: owner %d:%d, want the checkout's 1001:1002 (the runner's user must read it)", p, s.Uid, s.Gid)
		}
	}
}
