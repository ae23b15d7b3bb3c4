// What a pod's Node.js program does with podid: the JS v3 SDK's default
// credential chain, configured by the injected environment only. Prints who
// it is as one JSON line.
import { STSClient, GetCallerIdentityCommand } from "@aws-sdk/client-sts";

const client = new STSClient({});
try {
  const who = await client.send(new GetCallerIdentityCommand({}));
  const creds = await client.config.credentials();
  console.log(JSON.stringify({ arn: who.Arn, accessKeyId: creds.accessKeyId, expires: creds.expiration?.toISOString() }));
} catch (err) {
  console.error("workload:", err.name, err.message);
  process.exit(1);
}
