// TypeScript 5.9's declaration emit writes the type of Client.options (inferred from
// options.js) with the name `Fetch` but without its import (generated/client-core.d.ts).
// This global alias resolves it to the very type it names; it is not used anywhere else.
type Fetch = import("./generated/transport-base.js").Fetch;
