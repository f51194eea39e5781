// Package yamlline finds where a field is in a YAML document, so the errors of the
// lab's own files (job files, runners.yaml) say file:line: field: problem.
package yamlline

import (
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Of is the line of a key path ("boards", "0", "port") in the document root: the line
// of the deepest part of the path that exists (a mapping key's line, a sequence item's
// line). A path that leaves the document early gives the last line found, at least 1.
func Of(root *yaml.Node, keys ...string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := max(n.Line, 1)
	for _, k := range keys {
		switch n.Kind {
		case yaml.MappingNode:
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == k {
					line = n.Content[i].Line
					n = n.Content[i+1]
					found = true
					break
				}
			}
			if !found {
				return line
			}
		case yaml.SequenceNode:
			idx, err := strconv.Atoi(k)
			if err != nil || idx < 0 || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = max(n.Line, line)
		default:
			return line
		}
	}
	return line
}

var lineRe = regexp.MustCompile(`line (\d+): (.*)`)

// Locate splits a yaml.v3 decoding error into its line (1 when it names none) and its
// message, without yaml.v3's prefixes.
func Locate(err error) (int, string) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n  ")
	if m := lineRe.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return max(line, 1), m[2]
	}
	return 1, msg
}
