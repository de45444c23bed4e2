/**
 * client.d.ts against the JavaScript it declares. tsconfig.impl.json first writes generated/:
 * the declarations that client.js and its modules imply by their JSDoc (TypeScript's own
 * reading of the code). This file then fails to compile when the two disagree:
 *
 * 1. client.js and client.d.ts export the same values, by name;
 * 2. every export of client.js is assignable to its declared type (the code does what the
 *    declaration promises: same parameters, same or narrower results);
 * 3. the Client's public members (neither `_private` nor the internals listed below) are
 *    exactly the declared ones, and so are the event names of `on()` (one payload each, plus
 *    the two whose listeners get `(topic, member)`);
 *    A SharedClient (a tab sharing a connection, share.js) has the same public members;
 * 4. the declared data types (options, stats, publications...) equal the JSDoc ones, key for
 *    key and both ways assignable.
 */

import type * as declared from "../../transports/static/client.js";
import type * as D from "../../transports/static/client.js";
import type * as impl from "./generated/client.js";
import type * as I from "./generated/client.js";
import type { State as IState } from "./generated/client-core.js";
import type { Frame as IFrame } from "./generated/codec.js";
import type { SharedClient as IShared } from "./generated/share.js";
import type { Stats as IStats } from "./generated/stats.js";
import type { Publication as IPublication } from "./generated/subscriptions.js";
import type {
  Member as IMember,
  PresenceListing as IPresenceListing,
  PresenceSync as IPresenceSync,
  SubscribeOptions as ISubscribeOptions,
} from "./generated/presence.js";
import type { Clock as IClock } from "./generated/timer.js";
import type {
  CloseInfo as ICloseInfo,
  Fetch as IFetch,
  TransportOptions as ITransportOptions,
} from "./generated/transport-base.js";
import type { TransportName as ITransportName } from "./generated/transports.js";

/** true when A and B are the same type. */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
/** true when A and B are assignable to each other and have the same keys. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? Equal<keyof A, keyof B> : false) : false;

declare function check<T extends true>(): void;
/** Compiles only when every name of B is one of A (an error names the extra ones). */
declare function names<A extends string, B extends A>(): void;

// 1. The same exported values (a name on one side only is named in the error).
names<keyof typeof impl, keyof typeof declared>();
names<keyof typeof declared, keyof typeof impl>();

// 2. Each export of client.js is what client.d.ts declares.
declare const code: typeof impl;
export const implemented: typeof declared = code;

// 3. The Client's public surface. Public in JavaScript but not API (no underscore, yet only
//    the client itself uses them): the resolved options, the URLs and keys it derived.
type Internal = "options" | "negotiateUrl" | "storageKey" | "clientKey";
type PublicMembers = Exclude<keyof I.Client, `_${string}` | Internal>;
names<PublicMembers, keyof D.Client>();
names<keyof D.Client, PublicMembers>();
check<Equal<Parameters<I.Client["on"]>[0], keyof D.ClientEvents | D.MemberEvent>>();
check<Same<Awaited<ReturnType<I.Client["subscribe"]>["ready"]>, D.SubscribeResult>>();

// 3b. A tab sharing a connection gets a SharedClient (share.js) from connect(): the same public
//     surface as a Client, each member assignable to the declared one.
type SharedMembers = Exclude<keyof IShared, `_${string}` | "options">;
names<SharedMembers, keyof D.Client>();
names<keyof D.Client, SharedMembers>();
export const sharedIsClient: { [K in keyof D.Client]: D.Client[K] } = {} as { [K in SharedMembers]: IShared[K] };

// 4. The data types.
check<Same<I.Options, D.Options>>();
check<Same<IStats, D.Stats>>();
check<Same<IPublication, D.Publication>>();
check<Same<IMember, D.Member>>();
check<Same<IPresenceListing, D.PresenceListing>>();
check<Same<IPresenceSync, D.PresenceSync>>();
check<Same<ISubscribeOptions, D.SubscribeOptions>>();
check<Equal<Parameters<I.Client["subscribe"]>[2], D.SubscribeOptions | undefined>>();
check<Same<Awaited<ReturnType<I.Client["presence"]>>, D.PresenceListing>>();
check<Same<ReturnType<I.Client["members"]>[number], D.Member>>();
check<Same<ICloseInfo, D.CloseInfo>>();
check<Same<IClock, D.Clock>>();
check<Same<IFetch, D.Fetch>>();
check<Same<ITransportOptions, D.TransportOptions>>();
check<Equal<IState, D.State>>();
check<Equal<ITransportName, D.TransportName>>();
check<Equal<IFrame, D.Frame>>();
