package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/keyturn/keyturn/internal/cli"
)

// Set at build time with -ldflags "-X main.commit=... -X main.buildDate=..."; otherwise taken
// from the build information the go command records.
var (
	commit    string
	buildDate string
)

// versionInfo is what `keyturn version` prints.
type versionInfo struct {
	Version   string `json:"version"`    // the module version ((devel) for a build from a checkout)
	Commit    string `json:"commit"`     // the VCS revision, when known
	GoVersion string `json:"go_version"` // the toolchain that built the binary
	BuildDate string `json:"build_date"` // when it was built (or the commit's time), when known
}

// currentVersion reads the binary's version information.
func currentVersion() versionInfo {
	v := versionInfo{Version: "(devel)", Commit: commit, GoVersion: runtime.Version(), BuildDate: buildDate}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && v.Commit == "":
				v.Commit = s.Value
			case s.Key == "vcs.time" && v.BuildDate == "":
				v.BuildDate = s.Value
			}
		}
	}
	return v
}

// String is the one-line form printed by --version.
func (v versionInfo) String() string {
	s := "keyturn " + v.Version + " (" + v.GoVersion
	if v.Commit != "" {
		s += ", commit " + v.Commit
	}
	if v.BuildDate != "" {
		s += ", built " + v.BuildDate
	}
	return s + ")"
}

func newVersionCommand() *cobra.Command {
	var out cli.Output
	cmd := &cobra.Command{
		Use:   "version [-o json|yaml]",
		Short: "Print keyturn's version, commit, Go version and build date",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := out.Format()
			if err != nil {
				return err
			}
			v := currentVersion()
			if format == cli.FormatTable {
				_, err := fmt.Fprintln(cmd.OutOrStdout(), v)
				return err
			}
			return cli.WriteAs(cmd.OutOrStdout(), format, v)
		},
	}
	cli.AddOutputFlag(cmd, &out)
	return cmd
}
