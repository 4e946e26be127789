package restic

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Snapshot is one entry of `restic snapshots --json`.
type Snapshot struct {
	ID       string    `json:"id"`
	ShortID  string    `json:"short_id"`
	Time     time.Time `json:"time"`
	Tree     string    `json:"tree"`
	Paths    []string  `json:"paths"`
	Hostname string    `json:"hostname"`
	Tags     []string  `json:"tags"`
}

// Tag returns the value of a key=value tag, or "".
func (s Snapshot) Tag(key string) string {
	for _, t := range s.Tags {
		if k, v, ok := strings.Cut(t, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// Summary is the summary line of `restic backup --json`.
type Summary struct {
	SnapshotID          string    `json:"snapshot_id"`
	FilesNew            int       `json:"files_new"`
	DataAdded           int64     `json:"data_added"`
	DataAddedPacked     int64     `json:"data_added_packed"`
	TotalBytesProcessed int64     `json:"total_bytes_processed"`
	TotalDuration       float64   `json:"total_duration"`
	BackupStart         time.Time `json:"backup_start"`
	BackupEnd           time.Time `json:"backup_end"`
}

// ParseSnapshots parses `restic snapshots --json`.
func ParseSnapshots(out []byte) ([]Snapshot, error) {
	var s []Snapshot
	if err := json.Unmarshal(bytes.TrimSpace(out), &s); err != nil {
		return nil, fmt.Errorf("parsing restic snapshots output: %w", err)
	}
	return s, nil
}

// ParseBackup finds the summary among the JSON lines of `restic backup --json` (status lines come first).
func ParseBackup(out []byte) (Summary, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var head struct {
			MessageType string `json:"message_type"`
		}
		if json.Unmarshal(line, &head) != nil || head.MessageType != "summary" {
			continue
		}
		var s Summary
		if err := json.Unmarshal(line, &s); err != nil {
			return Summary{}, fmt.Errorf("parsing restic backup summary: %w", err)
		}
		if s.SnapshotID == "" {
			return Summary{}, fmt.Errorf("restic backup summary without a snapshot id")
		}
		return s, nil
	}
	return Summary{}, fmt.Errorf("restic backup printed no summary")
}

// ParseInit returns the id from `restic init --json`.
func ParseInit(out []byte) (string, error) {
	var v struct {
		MessageType string `json:"message_type"`
		ID          string `json:"id"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &v); err != nil || v.ID == "" {
		return "", fmt.Errorf("parsing restic init output %q: %v", out, err)
	}
	return v.ID, nil
}

// ParseConfigID returns the repository id from `restic cat config`.
func ParseConfigID(out []byte) (string, error) {
	var v struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &v); err != nil || v.ID == "" {
		return "", fmt.Errorf("parsing restic config %q: %v", out, err)
	}
	return v.ID, nil
}

// ParseExitError returns restic's message from stderr: the "exit_error" JSON line it prints with --json, or
// else the last non-empty line of text.
func ParseExitError(stderr []byte) string {
	last := ""
	for _, line := range bytes.Split(stderr, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var v struct {
			MessageType string `json:"message_type"`
			Message     string `json:"message"`
		}
		if line[0] == '{' && json.Unmarshal(line, &v) == nil && v.MessageType == "exit_error" {
			return v.Message
		}
		last = string(line)
	}
	return last
}

// ForgetPlan is what `restic forget --dry-run --json` would keep and remove, over all groups.
type ForgetPlan struct {
	Keep, Remove []Snapshot
}

// ParseForgetDryRun parses `restic forget --dry-run --json`.
func ParseForgetDryRun(out []byte) (ForgetPlan, error) {
	var groups []struct {
		Keep   []Snapshot `json:"keep"`
		Remove []Snapshot `json:"remove"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &groups); err != nil {
		return ForgetPlan{}, fmt.Errorf("parsing restic forget output: %w", err)
	}
	var p ForgetPlan
	for _, g := range groups {
		p.Keep = append(p.Keep, g.Keep...)
		p.Remove = append(p.Remove, g.Remove...)
	}
	return p, nil
}
