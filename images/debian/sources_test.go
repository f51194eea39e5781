package debian

import "testing"

func TestDeriveSuiteFromDeb822(t *testing.T) {
	in := `Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: https://vendor.example/apt
Suites: nodistro
Components: main
Architectures: amd64

Types: deb
URIs: http://off.example/debian
Suites: bookworm
Components: main
Enabled: no
`
	srcs, err := ParseSources([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(srcs) != 3 {
		t.Fatalf("want 3 enabled entries, got %+v", srcs)
	}
	got := string(FormatList(ForSuite(srcs, "bookworm", "trixie")))
	want := "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.example/debian trixie main\n" +
		"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.example/debian trixie-updates main\n" +
		"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.example/debian-security trixie-security main contrib\n"
	if got != want {
		t.Errorf("trixie:\n%s\nwant:\n%s", got, want)
	}
	sid := string(FormatList(ForSuite(srcs, "bookworm", "sid")))
	if sid != "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.example/debian sid main\n" {
		t.Errorf("sid has no -updates or -security suites:\n%s", sid)
	}
}

func TestDeriveSuiteFromOneLine(t *testing.T) {
	in := `# comment
deb http://mirror.example/debian bookworm main non-free-firmware
deb [arch=amd64,armhf signed-by=/k.gpg] http://mirror.example/debian bookworm-updates main # trailing
deb-src http://mirror.example/debian bookworm main
deb http://mirror.example/debian bookworm-backports main
deb https://packages.example/apt cloud-sdk-bookworm main
`
	srcs, err := ParseSources([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	got := string(FormatList(ForSuite(srcs, "bookworm", "trixie")))
	want := "deb http://mirror.example/debian trixie main non-free-firmware\n" +
		"deb [arch=amd64,armhf signed-by=/k.gpg] http://mirror.example/debian trixie-updates main\n"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if _, err := ParseSources([]byte("deb http://only-a-uri\n")); err == nil {
		t.Error("a line without a suite must be an error")
	}
	if len(ForSuite(srcs[4:], "bookworm", "trixie")) != 0 {
		t.Error("a vendor suite that merely contains the codename is not Debian's")
	}
}

func TestDeriveBackports(t *testing.T) {
	srcs, err := ParseSources([]byte("deb [signed-by=/k.gpg] http://mirror.example/debian bookworm main\n" +
		"deb http://mirror.example/debian bookworm-updates main\ndeb http://mirror.example/debian-security bookworm-security main\n"))
	if err != nil {
		t.Fatal(err)
	}
	// bookworm-backports alone: the host's own suite is in the main root already.
	if got := string(FormatList(ForSuite(srcs, "bookworm", "bookworm-backports"))); got != "deb [signed-by=/k.gpg] http://mirror.example/debian bookworm-backports main\n" {
		t.Errorf("bookworm-backports:\n%s", got)
	}
	// A newer suite's backports with the suite itself, whose libraries its kbuild tools need.
	want := "deb [signed-by=/k.gpg] http://mirror.example/debian trixie-backports main\ndeb [signed-by=/k.gpg] http://mirror.example/debian trixie main\n"
	if got := string(FormatList(ForSuite(srcs, "bookworm", "trixie-backports"))); got != want {
		t.Errorf("trixie-backports:\n%s\nwant:\n%s", got, want)
	}
}
