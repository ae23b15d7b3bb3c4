// Drives podid's EKS-compatible association API with the unmodified
// @aws-sdk/client-eks, as an administrator's script would, and prints one
// JSON line per step for test/integration/eksapi_js_test.go to check.
import {
  EKSClient,
  CreatePodIdentityAssociationCommand,
  DescribePodIdentityAssociationCommand,
  UpdatePodIdentityAssociationCommand,
  ListPodIdentityAssociationsCommand,
  DeletePodIdentityAssociationCommand,
  TagResourceCommand,
  UntagResourceCommand,
  ListTagsForResourceCommand,
} from "@aws-sdk/client-eks";

const env = process.env;
const client = new EKSClient({
  region: env.PODID_REGION,
  endpoint: env.PODID_ENDPOINT,
  credentials: { accessKeyId: env.PODID_ACCESS_KEY_ID, secretAccessKey: env.PODID_SECRET_ACCESS_KEY },
  maxAttempts: 1,
});
const clusterName = env.PODID_CLUSTER;
const namespace = env.PODID_NAMESPACE;

async function step(name, command) {
  try {
    const out = await client.send(command);
    const a = out.association;
    console.log(JSON.stringify({
      step: name, ok: true,
      associationId: a?.associationId, roleArn: a?.roleArn, tags: a?.tags ?? out.tags,
      createdAt: a?.createdAt instanceof Date ? a.createdAt.toISOString() : undefined,
      names: out.associations?.map((s) => s.serviceAccount).sort(),
    }));
    return out;
  } catch (err) {
    console.log(JSON.stringify({ step: name, ok: false, error: err.name, status: err.$metadata?.httpStatusCode, message: err.message }));
    return undefined;
  }
}

const created = await step("create", new CreatePodIdentityAssociationCommand({
  clusterName, namespace, serviceAccount: "js-app",
  roleArn: "arn:aws:iam::111122223333:role/js-app", tags: { client: "js" },
}));
const id = created?.association?.associationId ?? "a-00000000000000000";
await step("describe", new DescribePodIdentityAssociationCommand({ clusterName, associationId: id }));
await step("update", new UpdatePodIdentityAssociationCommand({ clusterName, associationId: id, roleArn: "arn:aws:iam::111122223333:role/js-app-v2" }));
const resourceArn = created?.association?.associationArn ?? "arn:aws:eks:none";
await step("tag", new TagResourceCommand({ resourceArn, tags: { team: "js" } }));
await step("untag", new UntagResourceCommand({ resourceArn, tagKeys: ["client"] }));
await step("tags", new ListTagsForResourceCommand({ resourceArn }));
await step("tag-reserved", new TagResourceCommand({ resourceArn, tags: { "aws:team": "js" } }));
await step("list", new ListPodIdentityAssociationsCommand({ clusterName, namespace }));
await step("duplicate", new CreatePodIdentityAssociationCommand({
  clusterName, namespace, serviceAccount: "js-app", roleArn: "arn:aws:iam::111122223333:role/other",
}));
await step("missing", new DescribePodIdentityAssociationCommand({ clusterName, associationId: "a-00000000000000000" }));
const temp = await step("create-temp", new CreatePodIdentityAssociationCommand({
  clusterName, namespace, serviceAccount: "js-temp", roleArn: "arn:aws:iam::111122223333:role/js-temp",
}));
await step("delete", new DeletePodIdentityAssociationCommand({ clusterName, associationId: temp?.association?.associationId ?? "a-00000000000000000" }));
