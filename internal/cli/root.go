// Package cli builds podid's command tree with cobra: one command per
// component (server, agent, rotator) and the operator's commands
// (association, version). Commands parse flags into the options of the
// package that does the work and hold no logic of their own beyond that,
// except the association commands, whose work is talking to the API.
package cli

import (
	"io"

	"github.com/podid/podid/internal/agentcmd"

	"github.com/spf13/cobra"
)

// Streams are where a command reads and writes, injected for tests.
type Streams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// NewRootCommand returns the `podid` command with all its subcommands.
func NewRootCommand(streams Streams) *cobra.Command {
	root := &cobra.Command{
		Use:   "podid",
		Short: "Pod Identity for any Kubernetes cluster",
		Long: `podid gives pods short-lived AWS credentials for the IAM role their
ServiceAccount is associated with, through the standard AWS SDK credential
chain, on any Kubernetes cluster. It speaks the wire contracts of Amazon EKS
Pod Identity.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.Err)

	root.AddGroup(
		&cobra.Group{ID: "components", Title: "Components:"},
		&cobra.Group{ID: "operate", Title: "Operating podid:"},
	)
	server := newServerCommand()
	server.GroupID = "components"
	agentCmd := agentcmd.NewCommand()
	agentCmd.GroupID = "components"
	rot := newRotatorCommand()
	rot.GroupID = "components"
	assoc := newAssociationCommand(streams)
	assoc.GroupID = "operate"
	mig := newMigrateCommand(streams)
	mig.GroupID = "operate"
	doc := newDoctorCommand(streams)
	doc.GroupID = "operate"
	role := newRoleCommand(streams)
	role.GroupID = "operate"
	ranywhere := newRolesAnywhereCommand(streams)
	ranywhere.GroupID = "operate"
	root.AddCommand(server, agentCmd, rot, assoc, newAccessKeyCommand(streams), role, ranywhere, mig, doc, newVersionCommand(streams))
	return root
}
