package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/rolesanywhere"

	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/spf13/cobra"

	"github.com/podid/podid/internal/doctor"
	"github.com/podid/podid/internal/kube"
)

type doctorFlags struct {
	streams        Streams
	conn           *kube.ConnectionFlags
	output         string
	podidNamespace string
	noLive, noAWS  bool
	liveTimeout    time.Duration
}

func newDoctorCommand(streams Streams) *cobra.Command {
	f := &doctorFlags{streams: streams, conn: kube.NewConnectionFlags()}
	cmd := &cobra.Command{
		Use:   "doctor [pod|serviceaccount|deployment NAMESPACE/NAME]",
		Short: "Find out why a pod gets no AWS credentials, and what to do",
		Long: `Without a target, doctor checks podid itself: its server (replicas, leader), its
webhook (the caBundle verifies the serving certificate), its agents (a ready one on
every schedulable node), the AWS identity the server publishes, and, asked through
the server, that STS answers it.

With a pod, ServiceAccount or Deployment, it then checks each pod: the agent on its
node, its association (and near misses), its injection (or a pod older than its
association), what comes before Pod Identity in the SDKs' chain (static keys, IRSA),
an HTTP proxy without the agent in NO_PROXY, NetworkPolicies denying egress to the
agent, host ports clashing with the agent's, the role's trust policy (through IAM
with your AWS credentials, when you have them), and finally asks podid server to
perform the pod's exchange and report the session it got or the refusal (the
credentials are never handed out).

Each line is ✓ (fine), ! (a warning), ✗ (a failure) or - (not checked), with what
doctor saw and, below it, what to do. The exit status is 1 when something failed.`,
		Example: `  podid doctor
  podid doctor pod shop/billing-7d9c6
  podid doctor deployment shop/billing -o json
  podid doctor serviceaccount shop/billing --no-aws`,
		Args: cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd.Context(), args)
		},
	}
	f.conn.AddFlags(cmd.Flags())
	fs := cmd.Flags()
	fs.StringVarP(&f.output, "output", "o", "text", "text or json")
	fs.StringVar(&f.podidNamespace, "podid-namespace", "podid-system", "where podid runs")
	fs.BoolVar(&f.noLive, "no-live", false, "do not ask podid server to perform exchanges")
	fs.BoolVar(&f.noAWS, "no-aws", false, "do not read roles with your AWS credentials")
	fs.DurationVar(&f.liveTimeout, "live-timeout", 10*time.Second, "how long to wait for podid server's answer")
	return cmd
}

// errProblems makes the exit status 1; the report said what they are.
var errProblems = errors.New("doctor found problems (✗ above)")

func (f *doctorFlags) run(ctx context.Context, args []string) error {
	if f.output != "text" && f.output != "json" {
		return fmt.Errorf("--output %q: use text or json", f.output)
	}
	kind := ""
	var ns, name string
	if len(args) > 0 {
		kind = map[string]string{"pod": "pod", "pods": "pod", "po": "pod",
			"serviceaccount": "serviceaccount", "serviceaccounts": "serviceaccount", "sa": "serviceaccount",
			"deployment": "deployment", "deployments": "deployment", "deploy": "deployment"}[args[0]]
		if kind == "" {
			return fmt.Errorf("doctor checks a pod, a serviceaccount or a deployment, not %q", args[0])
		}
		if len(args) == 1 {
			return fmt.Errorf("name the %s as NAMESPACE/NAME (or NAME with --namespace)", kind)
		}
		var err error
		if ns, name, err = f.target(args[1]); err != nil {
			return err
		}
	}
	c, cfg, err := connect(f.conn)
	if err != nil {
		return err
	}
	d := &doctor.Doctor{Kube: c, Namespace: f.podidNamespace, Live: !f.noLive, LiveTimeout: f.liveTimeout}
	var report *doctor.Report
	switch kind {
	case "":
		report = d.Cluster(ctx)
	case "pod":
		f.useAWS(ctx, d)
		report, err = d.Pod(ctx, ns, name)
	case "serviceaccount":
		f.useAWS(ctx, d)
		report, err = d.ServiceAccount(ctx, ns, name)
	case "deployment":
		f.useAWS(ctx, d)
		report, err = d.Deployment(ctx, ns, name)
	}
	if err != nil {
		return explain(err, cfg.Host, "")
	}
	if f.output == "json" {
		err = report.WriteJSON(f.streams.Out)
	} else {
		err = report.WriteText(f.streams.Out)
	}
	if err != nil {
		return err
	}
	if report.Failed {
		return errProblems
	}
	return nil
}

// target reads NAMESPACE/NAME, or NAME in --namespace (or the kubeconfig's).
func (f *doctorFlags) target(arg string) (string, string, error) {
	if ns, name, ok := strings.Cut(arg, "/"); ok {
		if ns == "" || name == "" || strings.Contains(name, "/") {
			return "", "", fmt.Errorf("%q: give NAMESPACE/NAME", arg)
		}
		return ns, name, nil
	}
	ns, _, err := f.conn.Namespace()
	return ns, arg, err
}

// useAWS gives doctor an IAM client when the user has AWS credentials.
func (f *doctorFlags) useAWS(ctx context.Context, d *doctor.Doctor) {
	if f.noAWS {
		d.NoIAM = "--no-aws"
		return
	}
	cfg, err := userAWS(ctx, "us-east-1", "reading trust policies")
	if err != nil {
		d.NoIAM = err.Error()
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := cfg.Credentials.Retrieve(cctx); err != nil {
		d.NoIAM = "you have no AWS credentials (the standard chain found none); with credentials that may call iam:GetRole, doctor reads the role's trust policy"
		return
	}
	d.IAM = iam.NewFromConfig(cfg)
	d.RolesAnywhere = rolesanywhere.NewFromConfig(cfg)
}
