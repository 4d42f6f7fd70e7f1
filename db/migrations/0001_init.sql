-- parley schema, version 1.
--
-- Names are the keys: rooms and users are named by the protocol's own names
-- (PROTOCOL.md sections 2 and 4), so the persistence thread writes events
-- without looking anything up. Users need not be registered: tokens may be
-- minted by another system, so events name their user without a foreign key.

CREATE TABLE users (
	name          text PRIMARY KEY,
	password_hash text,
	created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rooms (
	name       text PRIMARY KEY,
	private    boolean NOT NULL DEFAULT false,
	created_by text,
	created_at timestamptz NOT NULL DEFAULT now()
);

-- Who may enter a private room (public rooms and DMs need no rows here).
CREATE TABLE members (
	room      text NOT NULL REFERENCES rooms (name) ON DELETE CASCADE,
	user_name text NOT NULL,
	PRIMARY KEY (room, user_name)
);

-- Each room's one ordered stream: messages, edits, deletes and reactions
-- (a reaction added or removed is an event like any other). ts is the
-- protocol's: milliseconds since the epoch, taken when sequenced.
CREATE TABLE events (
	room      text     NOT NULL,
	seq       bigint   NOT NULL CHECK (seq > 0),
	kind      text     NOT NULL CHECK (kind IN ('message', 'edit', 'delete', 'reaction')),
	user_name text     NOT NULL,
	target    bigint,
	body      text,
	emoji     text,
	add       boolean,
	client_id text,
	ts        bigint   NOT NULL,
	PRIMARY KEY (room, seq),
	CHECK ((kind = 'message') = (target IS NULL)),
	CHECK ((kind = 'reaction') = (emoji IS NOT NULL AND add IS NOT NULL))
);

-- A client id belongs to its user and room (PROTOCOL.md section 5). A
-- room's latest ids are loaded through the primary key (store.c): a
-- second (room, seq) index for them cost a fifth of the write rate.
CREATE UNIQUE INDEX events_client_id ON events (room, user_name, client_id)
	WHERE client_id IS NOT NULL;
-- The edits, deletes and reactions of one message.
CREATE INDEX events_target ON events (room, target) WHERE target IS NOT NULL;

CREATE TABLE read_positions (
	room      text   NOT NULL,
	user_name text   NOT NULL,
	seq       bigint NOT NULL,
	PRIMARY KEY (room, user_name)
);
