package lava

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Client speaks LAVA's XML-RPC API (what lavacli uses), logged in as user and token
// (HTTP basic authentication, as lavacli does).
type Client struct {
	URL         string // …/RPC2
	User, Token string
	HTTP        *http.Client
}

// ErrAuth is a token the lab refused.
var ErrAuth = errors.New("the lab refused the token")

// Fault is an XML-RPC fault.
type Fault struct {
	Code   int
	String string
}

func (f *Fault) Error() string { return fmt.Sprintf("fault %d: %s", f.Code, f.String) }

// Call calls method with params (string, int, bool, []byte, []any, map[string]any)
// and returns the decoded result (the same types; dateTime as string).
func (c *Client) Call(ctx context.Context, method string, params ...any) (any, error) {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0"?><methodCall><methodName>`)
	xml.EscapeText(&b, []byte(method))
	b.WriteString(`</methodName><params>`)
	for _, p := range params {
		b.WriteString("<param>")
		if err := encodeValue(&b, p); err != nil {
			return nil, err
		}
		b.WriteString("</param>")
	}
	b.WriteString(`</params></methodCall>`)
	sent := b.Len()
	req, err := http.NewRequestWithContext(ctx, "POST", c.URL, &b)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "text/xml")
	if c.User != "" || c.Token != "" {
		req.SetBasicAuth(c.User, c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 2 * time.Minute}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == 401 || resp.StatusCode == 403 {
		return nil, fmt.Errorf("%s: HTTP %d: %w", method, resp.StatusCode, ErrAuth)
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s: %w", method, &HTTPError{Status: resp.Status, Body: bodyText(body), Sent: sent})
	}
	v, err := decodeResponse(body)
	var f *Fault
	if errors.As(err, &f) && (f.Code == 401 || f.Code == 403) {
		return nil, fmt.Errorf("%s: %v: %w", method, f, ErrAuth)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	return v, nil
}

// HTTPError is an answer that is not an XML-RPC response: the web server's or
// Django's own (a body over DATA_UPLOAD_MAX_MEMORY_SIZE is a 400 with an HTML page).
type HTTPError struct {
	Status string // "400 Bad Request"
	Body   string // the page's text, shortened
	Sent   int    // the request's size in bytes
}

// djangoMaxBody is Django's default DATA_UPLOAD_MAX_MEMORY_SIZE, which a stock
// lava-server keeps: a larger request body is refused with HTTP 400.
const djangoMaxBody = 2621440

func (e *HTTPError) Error() string {
	msg := "HTTP " + e.Status
	if e.Body != "" {
		msg += ": " + e.Body
	}
	if strings.HasPrefix(e.Status, "400") && e.Sent > djangoMaxBody {
		msg += fmt.Sprintf(" (the request was %d bytes: lava-server refuses bodies over its DATA_UPLOAD_MAX_MEMORY_SIZE, "+
			"%d by default; lower artefacts.inline_max so the files travel by artefacts.url, or ask the lab to raise it)", e.Sent, djangoMaxBody)
	}
	return msg
}

var (
	tags    = regexp.MustCompile(`<[^>]*>`)
	titleRe = regexp.MustCompile(`(?is)<title>(.*?)</title>`)
)

// bodyText is an HTML or text body as one short line.
func bodyText(b []byte) string {
	if t := titleRe.FindSubmatch(b); t != nil {
		b = t[1]
	}
	s := strings.Join(strings.Fields(html.UnescapeString(tags.ReplaceAllString(string(b), " "))), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func encodeValue(b *bytes.Buffer, v any) error {
	b.WriteString("<value>")
	switch x := v.(type) {
	case string:
		b.WriteString("<string>")
		xml.EscapeText(b, []byte(x))
		b.WriteString("</string>")
	case int:
		fmt.Fprintf(b, "<int>%d</int>", x)
	case bool:
		if x {
			b.WriteString("<boolean>1</boolean>")
		} else {
			b.WriteString("<boolean>0</boolean>")
		}
	case []byte:
		fmt.Fprintf(b, "<base64>%s</base64>", base64.StdEncoding.EncodeToString(x))
	case []any:
		b.WriteString("<array><data>")
		for _, e := range x {
			if err := encodeValue(b, e); err != nil {
				return err
			}
		}
		b.WriteString("</data></array>")
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString("<struct>")
		for _, k := range keys {
			b.WriteString("<member><name>")
			xml.EscapeText(b, []byte(k))
			b.WriteString("</name>")
			if err := encodeValue(b, x[k]); err != nil {
				return err
			}
			b.WriteString("</member>")
		}
		b.WriteString("</struct>")
	default:
		return fmt.Errorf("xml-rpc: cannot encode %T", v)
	}
	b.WriteString("</value>")
	return nil
}

// xval is an XML-RPC <value> as encoding/xml reads it.
type xval struct {
	Inner  string    `xml:",chardata"`
	String *string   `xml:"string"`
	Int    *string   `xml:"int"`
	I4     *string   `xml:"i4"`
	Bool   *string   `xml:"boolean"`
	Double *string   `xml:"double"`
	Date   *string   `xml:"dateTime.iso8601"`
	B64    *string   `xml:"base64"`
	Nil    *struct{} `xml:"nil"`
	Array  *struct {
		Values []xval `xml:"data>value"`
	} `xml:"array"`
	Struct *struct {
		Members []struct {
			Name  string `xml:"name"`
			Value xval   `xml:"value"`
		} `xml:"member"`
	} `xml:"struct"`
}

func (v xval) decode() (any, error) {
	switch {
	case v.String != nil:
		return *v.String, nil
	case v.Int != nil || v.I4 != nil:
		s := v.Int
		if s == nil {
			s = v.I4
		}
		return strconv.Atoi(strings.TrimSpace(*s))
	case v.Bool != nil:
		return strings.TrimSpace(*v.Bool) == "1", nil
	case v.Double != nil:
		return strconv.ParseFloat(strings.TrimSpace(*v.Double), 64)
	case v.Date != nil:
		return strings.TrimSpace(*v.Date), nil
	case v.B64 != nil:
		return base64.StdEncoding.DecodeString(strings.Join(strings.Fields(*v.B64), ""))
	case v.Nil != nil:
		return nil, nil
	case v.Array != nil:
		out := []any{}
		for _, e := range v.Array.Values {
			d, err := e.decode()
			if err != nil {
				return nil, err
			}
			out = append(out, d)
		}
		return out, nil
	case v.Struct != nil:
		out := map[string]any{}
		for _, m := range v.Struct.Members {
			d, err := m.Value.decode()
			if err != nil {
				return nil, err
			}
			out[m.Name] = d
		}
		return out, nil
	}
	return html.UnescapeString(v.Inner), nil // a bare value is a string
}

func decodeResponse(body []byte) (any, error) {
	var r struct {
		Params []xval `xml:"params>param>value"`
		Fault  *xval  `xml:"fault>value"`
	}
	if err := xml.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("not an XML-RPC response: %v", err)
	}
	if r.Fault != nil {
		fv, err := r.Fault.decode()
		if err != nil {
			return nil, err
		}
		m, _ := fv.(map[string]any)
		code, _ := m["faultCode"].(int)
		s, _ := m["faultString"].(string)
		return nil, &Fault{Code: code, String: s}
	}
	if len(r.Params) == 0 {
		return nil, fmt.Errorf("XML-RPC response without a value")
	}
	return r.Params[0].decode()
}

// JobInfo is what scheduler.jobs.show says about a job.
type JobInfo struct {
	ID         int
	State      string // Submitted, Scheduling, Scheduled, Running, Canceling, Finished
	Health     string // Unknown, Complete, Incomplete, Canceled
	Device     string
	Failure    string // failure_comment
	SubmitTime string
	StartTime  string
}

// Submit submits a job definition and returns its id.
func (c *Client) Submit(ctx context.Context, def []byte) (int, error) {
	v, err := c.Call(ctx, "scheduler.submit_job", string(def))
	if err != nil {
		return 0, err
	}
	switch x := v.(type) {
	case int:
		return x, nil
	case string:
		return strconv.Atoi(x)
	case []any: // multinode: the first sub-job
		if len(x) > 0 {
			if s, ok := x[0].(string); ok {
				id, _, _ := strings.Cut(s, ".")
				return strconv.Atoi(id)
			}
			if n, ok := x[0].(int); ok {
				return n, nil
			}
		}
	}
	return 0, fmt.Errorf("scheduler.submit_job: unexpected answer %v", v)
}

// Show is scheduler.jobs.show.
func (c *Client) Show(ctx context.Context, id int) (*JobInfo, error) {
	v, err := c.Call(ctx, "scheduler.jobs.show", id)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("scheduler.jobs.show %d: unexpected answer", id)
	}
	s := func(k string) string { x, _ := m[k].(string); return x }
	return &JobInfo{ID: id, State: s("state"), Health: s("health"), Device: s("device"),
		Failure: s("failure_comment"), SubmitTime: s("submit_time"), StartTime: s("start_time")}, nil
}

// Logs is scheduler.jobs.logs from line start: whether the log is complete, and the
// new part of it.
func (c *Client) Logs(ctx context.Context, id, start int) (finished bool, data []byte, err error) {
	v, err := c.Call(ctx, "scheduler.jobs.logs", id, start)
	if err != nil {
		return false, nil, err
	}
	a, ok := v.([]any)
	if !ok || len(a) != 2 {
		return false, nil, fmt.Errorf("scheduler.jobs.logs %d: unexpected answer", id)
	}
	finished, _ = a[0].(bool)
	switch d := a[1].(type) {
	case []byte:
		data = d
	case string:
		data = []byte(d)
	}
	// A job whose log file is not there yet (just started, or cancelled before it ran)
	// answers the YAML of an empty list: no line, and no newline after it, so kept it
	// would glue itself to the first record of the next answer.
	if string(bytes.TrimSpace(data)) == "[]" {
		data = nil
	}
	return finished, data, nil
}

// Cancel is scheduler.jobs.cancel.
func (c *Client) Cancel(ctx context.Context, id int) error {
	_, err := c.Call(ctx, "scheduler.jobs.cancel", id)
	return err
}

// Results is results.get_testjob_results_yaml: the job's test cases, lava's own
// suite included (its "job" case says why a job was Incomplete).
func (c *Client) Results(ctx context.Context, id int) (string, error) {
	v, err := c.Call(ctx, "results.get_testjob_results_yaml", id)
	if err != nil {
		return "", err
	}
	s, _ := v.(string)
	return s, nil
}

// WhoAmI is system.whoami: the user the token logs in as ("" when anonymous).
func (c *Client) WhoAmI(ctx context.Context) (string, error) {
	v, err := c.Call(ctx, "system.whoami")
	if err != nil {
		return "", err
	}
	s, _ := v.(string)
	return s, nil
}

// Device is one row of scheduler.devices.list.
type Device struct {
	Hostname, Type, Health, State string
}

// Devices is scheduler.devices.list.
func (c *Client) Devices(ctx context.Context) ([]Device, error) {
	v, err := c.Call(ctx, "scheduler.devices.list")
	if err != nil {
		return nil, err
	}
	a, _ := v.([]any)
	var out []Device
	for _, e := range a {
		m, _ := e.(map[string]any)
		s := func(k string) string { x, _ := m[k].(string); return x }
		out = append(out, Device{Hostname: s("hostname"), Type: s("type"), Health: s("health"), State: s("state")})
	}
	return out, nil
}
