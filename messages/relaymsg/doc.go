// Package relaymsg holds the messages the relay's actors exchange: the
// session actor (one per supervisor connection), the auth manager, the
// message router, and the relay's root actor and HTTP front that wire them
// together. The actor packages never import each other; they meet here.
//
// Who sends what (sessions, auth and router are children of the root actor,
// which forwards between them keeping the original sender; the messages of
// every request go to the router straight, one mailbox fewer each way):
//
//	front   -> root -> auth    CheckAddress (answered with AddressVerdict)
//	session -> root -> auth    Authenticate (answered with AuthResult)
//	session -> root -> router  SessionUp (answered with Registered)
//	session -> router          SessionDown (with its Orphans), Response,
//	                           Failed, Resume (answered with Adopt or
//	                           ResumeRefused), HandedOver
//	front   -> router          Forward, Done
//	front   -> root -> router  Drain, ListTunnels (answered with Tunnels)
//	                           ListSessions (answered with Sessions)
//	router  -> session         Dispatch, Cancel, Release (streamed exchanges
//	                           only), CloseSession, Handover, Adopt,
//	                           ResumeRefused
//	router, session -> front   through the Exchange's channels: Outcome, WriteFunc
package relaymsg
