package lava

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kmodlab/kmodlab/internal/yamlline"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
)

// Responses as a LAVA 2023.01 server writes them (Python's xmlrpc.client).
const (
	respSubmit = `<?xml version='1.0'?>
<methodResponse><params><param><value><int>42</int></value></param></params></methodResponse>`
	respShowQueued = `<?xml version='1.0'?>
<methodResponse><params><param><value><struct>
<member><name>id</name><value><int>42</int></value></member>
<member><name>device</name><value><nil/></value></member>
<member><name>state</name><value><string>Submitted</string></value></member>
<member><name>health</name><value><string>Unknown</string></value></member>
<member><name>submit_time</name><value><dateTime.iso8601>20250101T10:00:00</dateTime.iso8601></value></member>
</struct></value></param></params></methodResponse>`
	respShowDone = `<?xml version='1.0'?>
<methodResponse><params><param><value><struct>
<member><name>id</name><value><int>42</int></value></member>
<member><name>device</name><value><string>rpi4-01</string></value></member>
<member><name>state</name><value><string>Finished</string></value></member>
<member><name>health</name><value><string>Complete</string></value></member>
<member><name>failure_comment</name><value><nil/></value></member>
</struct></value></param></params></methodResponse>`
	respFault = `<?xml version='1.0'?>
<methodResponse><fault><value><struct>
<member><name>faultCode</name><value><int>401</int></value></member>
<member><name>faultString</name><value><string>Authentication with user and token required for this API.</string></value></member>
</struct></value></fault></methodResponse>`
	respDevices = `<?xml version='1.0'?>
<methodResponse><params><param><value><array><data>
<value><struct><member><name>hostname</name><value><string>rpi4-01</string></value></member><member><name>type</name><value><string>bcm2711-rpi-4-b</string></value></member><member><name>health</name><value><string>Good</string></value></member><member><name>state</name><value><string>Idle</string></value></member></struct></value>
<value><struct><member><name>hostname</name><value><string>rpi4-02</string></value></member><member><name>type</name><value><string>bcm2711-rpi-4-b</string></value></member><member><name>health</name><value><string>Good</string></value></member><member><name>state</name><value><string>Running</string></value></member></struct></value>
<value><struct><member><name>hostname</name><value><string>rpi4-03</string></value></member><member><name>type</name><value><string>bcm2711-rpi-4-b</string></value></member><member><name>health</name><value><string>Maintenance</string></value></member><member><name>state</name><value><string>Idle</string></value></member></struct></value>
<value><struct><member><name>hostname</name><value><string>qemu-01</string></value></member><member><name>type</name><value><string>qemu</string></value></member><member><name>health</name><value><string>Good</string></value></member><member><name>state</name><value><string>Idle</string></value></member></struct></value>
</data></array></value></param></params></methodResponse>`
)

func logsResp(finished bool, data string) string {
	f := "0"
	if finished {
		f = "1"
	}
	return `<?xml version='1.0'?><methodResponse><params><param><value><array><data><value><boolean>` + f +
		`</boolean></value><value><base64>` + Inline([]byte(data)) + `</base64></value></data></array></value></param></params></methodResponse>`
}

// fakeLab answers recorded responses by method, checking the credentials.
type fakeLab struct {
	t       *testing.T
	calls   []string
	shows   int
	answers map[string][]string // method -> responses in turn (the last repeats)
}

func (f *fakeLab) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	m := between(string(body), "<methodName>", "</methodName>")
	f.calls = append(f.calls, m)
	if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "s3cret" {
		io.WriteString(w, respFault)
		return
	}
	a := f.answers[m]
	if len(a) == 0 {
		f.t.Errorf("unexpected call %s", m)
		return
	}
	io.WriteString(w, a[0])
	if len(a) > 1 {
		f.answers[m] = a[1:]
	}
}

func between(s, a, b string) string {
	_, rest, _ := strings.Cut(s, a)
	v, _, _ := strings.Cut(rest, b)
	return v
}

func serverLab(t *testing.T, url string) *Lab {
	l := labs(t, "lava:\n  - {name: rpi4, url: \""+url+"\", user: alice, token_env: KMODLAB_TEST_LAVA_TOKEN, device_type: bcm2711-rpi-4-b, boot: {kernel: lab, arch: arm, prebuilt: /x, deploy: {to: tftp}, boot: {method: u-boot}}}\n")[0]
	return l
}

func TestClientSubmitFollowFetch(t *testing.T) {
	log1 := `- {"dt": "2025-01-01T10:00:01", "lvl": "info", "msg": "start"}` + "\n"
	log2 := `- {"dt": "2025-01-01T10:00:02", "lvl": "target", "msg": "KMODLAB-STEP-BEGIN 0 setup insmod"}
- {"dt": "2025-01-01T10:00:02", "lvl": "target", "msg": "KMODLAB-OUT 0: loaded"}
- {"dt": "2025-01-01T10:00:03", "lvl": "target", "msg": "KMODLAB-STEP-END 0 0 0"}
- {"dt": "2025-01-01T10:00:04", "lvl": "results", "msg": {"definition": "lava", "case": "job", "result": "pass"}}
`
	f := &fakeLab{t: t, answers: map[string][]string{
		"scheduler.submit_job": {respSubmit},
		"scheduler.jobs.show":  {respShowQueued, respShowQueued, respShowDone},
		"scheduler.jobs.logs":  {logsResp(false, log1), logsResp(true, log2)},
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	t.Setenv("KMODLAB_TEST_LAVA_TOKEN", "s3cret")
	l := serverLab(t, srv.URL)
	var progress strings.Builder
	p := NewProvider([]*Lab{l}, nil, nil, &progress)
	p.Poll = time.Millisecond
	c := runner.CellJob{Target: "rpi4", Cell: "rpi4/atomic", Steps: []runner.CellStep{{Phase: "setup", Name: "insmod"}}, LogDir: t.TempDir()}
	got, err := p.RunCell(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Steps) != 1 || got.Steps[0].Output != "loaded\n" || got.Steps[0].Status != 0 {
		t.Errorf("steps: %+v", got.Steps)
	}
	if want := "lava job 42 on rpi4-01 (" + srv.URL + "/scheduler/job/42)"; got.Ref != want {
		t.Errorf("ref %q, want %q", got.Ref, want)
	}
	if !strings.Contains(progress.String(), "queued") || !strings.Contains(progress.String(), "running on rpi4-01") {
		t.Errorf("progress shows no queue wait:\n%s", progress.String())
	}
}

func TestClientWrongToken(t *testing.T) {
	f := &fakeLab{t: t, answers: map[string][]string{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	t.Setenv("KMODLAB_TEST_LAVA_TOKEN", "wrong")
	l := serverLab(t, srv.URL)
	h := l.Check(context.Background())
	if h.OK || !strings.Contains(h.Problem, "does not log in as alice") {
		t.Errorf("wrong token: %+v", h)
	}
	p := NewProvider([]*Lab{l}, nil, nil, nil)
	_, err := p.RunCell(context.Background(), runner.CellJob{Target: "rpi4", Cell: "rpi4/x", LogDir: t.TempDir()})
	if !errors.Is(err, ErrAuth) {
		t.Errorf("submit with a wrong token: %v", err)
	}
	t.Setenv("KMODLAB_TEST_LAVA_TOKEN", "")
	if h := l.Check(context.Background()); h.OK || !strings.Contains(h.Problem, "token_env KMODLAB_TEST_LAVA_TOKEN is not set") {
		t.Errorf("no token: %+v", h)
	}
}

func TestCheckCountsDevices(t *testing.T) {
	f := &fakeLab{t: t, answers: map[string][]string{
		"system.whoami":          {`<?xml version='1.0'?><methodResponse><params><param><value><string>alice</string></value></param></params></methodResponse>`},
		"scheduler.devices.list": {respDevices},
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	t.Setenv("KMODLAB_TEST_LAVA_TOKEN", "s3cret")
	h := serverLab(t, srv.URL).Check(context.Background())
	if !h.OK || h.User != "alice" || h.Idle != 1 || h.Busy != 1 || h.Offline != 1 {
		t.Errorf("health %+v", h)
	}
}

func TestQueueTimeoutCancels(t *testing.T) {
	f := &fakeLab{t: t, answers: map[string][]string{
		"scheduler.submit_job":  {respSubmit},
		"scheduler.jobs.show":   {respShowQueued},
		"scheduler.jobs.cancel": {`<?xml version='1.0'?><methodResponse><params><param><value><boolean>1</boolean></value></param></params></methodResponse>`},
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	t.Setenv("KMODLAB_TEST_LAVA_TOKEN", "s3cret")
	l := serverLab(t, srv.URL)
	l.QueueTimeout = yamlline.Duration(20 * time.Millisecond)
	p := NewProvider([]*Lab{l}, nil, nil, nil)
	p.Poll = 5 * time.Millisecond
	_, err := p.RunCell(context.Background(), runner.CellJob{Target: "rpi4", Cell: "rpi4/x", LogDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "no bcm2711-rpi-4-b device took the job within queue_timeout") {
		t.Fatalf("queue timeout: %v", err)
	}
	if f.calls[len(f.calls)-1] != "scheduler.jobs.cancel" {
		t.Errorf("the queued job was not cancelled: %v", f.calls)
	}
}

func TestXMLRPCValues(t *testing.T) {
	v, err := decodeResponse([]byte(`<methodResponse><params><param><value><struct><member><name>a</name><value>bare &amp; text</value></member><member><name>b</name><value><array><data><value><i4>7</i4></value><value><double>1.5</double></value></data></array></value></member></struct></value></param></params></methodResponse>`))
	if err != nil {
		t.Fatal(err)
	}
	m := v.(map[string]any)
	if m["a"] != "bare & text" || m["b"].([]any)[0] != 7 || m["b"].([]any)[1] != 1.5 {
		t.Errorf("decoded %#v", v)
	}
	var f *Fault
	if _, err := decodeResponse([]byte(respFault)); !errors.As(err, &f) || f.Code != 401 {
		t.Errorf("fault: %v", err)
	}
}

// TestClientBodyTooBig: a stock lava-server (Django) answers a submission over its
// DATA_UPLOAD_MAX_MEMORY_SIZE with a bare HTML 400 (recorded from lava-server 2023.01);
// the error says so and what to do, not just "HTTP 400".
func TestClientBodyTooBig(t *testing.T) {
	page, err := os.ReadFile("testdata/django-400-body-too-big.html")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(400)
		w.Write(page)
	}))
	defer srv.Close()
	cl := &Client{URL: srv.URL + "/RPC2", User: "alice", Token: "s3cret"}
	_, err = cl.Submit(context.Background(), bytes.Repeat([]byte("a"), 3<<20))
	var he *HTTPError
	if !errors.As(err, &he) || !strings.HasPrefix(he.Status, "400") {
		t.Fatalf("err %v, want an HTTPError 400", err)
	}
	for _, want := range []string{"scheduler.submit_job: HTTP 400 Bad Request: Bad Request (400) (the request was", "DATA_UPLOAD_MAX_MEMORY_SIZE", "artefacts.inline_max"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// A small request refused with 400 is not blamed on the size.
	_, err = cl.Submit(context.Background(), []byte("device_type: x\n"))
	if err == nil || strings.Contains(err.Error(), "DATA_UPLOAD_MAX_MEMORY_SIZE") {
		t.Errorf("small request: %v", err)
	}
}

// TestClientLogsNotYet: lava-server 2023.01 answers scheduler.jobs.logs for a job whose
// log file does not exist yet with Binary("[]") (recorded); it is no log text, and the
// next answer's first record is read whole.
func TestClientLogsNotYet(t *testing.T) {
	const respNotYet = `<?xml version='1.0'?>
<methodResponse>
<params>
<param>
<value><array><data>
<value><boolean>0</boolean></value>
<value><base64>
W10=
</base64></value>
</data></array></value>
</param>
</params>
</methodResponse>
`
	first := `- {"dt": "2025-01-01T10:00:01", "lvl": "target", "msg": "KMODLAB-STEP-BEGIN 0 setup insmod"}` + "\n"
	f := &fakeLab{t: t, answers: map[string][]string{"scheduler.jobs.logs": {respNotYet, logsResp(true, first)}}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	cl := &Client{URL: srv.URL + "/RPC2", User: "alice", Token: "s3cret"}
	var log []byte
	for i := 0; i < 2; i++ {
		_, data, err := cl.Logs(context.Background(), 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 && len(data) != 0 {
			t.Errorf("a log not there yet gave %q", data)
		}
		log = append(log, data...)
	}
	recs := ParseLog(log)
	if len(recs) != 1 || recs[0].Text() != "KMODLAB-STEP-BEGIN 0 setup insmod" {
		t.Errorf("records %+v", recs)
	}
}
