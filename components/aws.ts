/**
 * `@pulumi/aws` is an optional peer dependency: loaded only by the components that declare
 * AWS resources (the EBS schedule, the rehearsal instance, the Route53 record), when they do.
 * Not exported from the package: its types would make `@pulumi/aws` required for every user.
 */
export function loadPulumiAws(what: string): typeof import("@pulumi/aws") {
  try {
     
    return require("@pulumi/aws") as typeof import("@pulumi/aws");
  } catch (e) {
    throw new Error(
      `${what} declares AWS resources: install @pulumi/aws in your program (\`npm i @pulumi/aws\`), an optional peer dependency of pulumi-understudy (${(e as Error).message.split("\n")[0]})`,
      { cause: e },
    );
  }
}
