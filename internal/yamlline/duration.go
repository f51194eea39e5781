package yamlline

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration in the lab's YAML files, written as "30s", "2m" or
// "1h": the job file's timeouts and runners.yaml's LAVA timeouts.
type Duration time.Duration

// UnmarshalYAML reads "90s", "30m", "1h". A negative one is read: the field's owner
// refuses it with the field's name.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (like 30s or 2m)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// D is the duration, or def when unset.
func (d Duration) D(def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return time.Duration(d)
}
