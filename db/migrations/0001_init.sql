-- parley schema, version 1.
--
-- Rooms get an integer id when first touched (parleyd inserts the row as it
-- loads the room), and the stream refers to rooms by it: text room names in
-- the primary key made every insert compare strings. Users are named by
-- their protocol names and need not be registered (tokens may be minted by
-- another system), so events name their user without a foreign key.

CREATE TABLE users (
	name          text PRIMARY KEY,
	password_hash text,
	created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rooms (
	id         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name       text NOT NULL UNIQUE,
	private    boolean NOT NULL DEFAULT false,
	created_by text,
	created_at timestamptz NOT NULL DEFAULT now()
);

-- Who may enter a private room (public rooms and DMs need no rows here).
CREATE TABLE members (
	room_id   integer NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
	user_name text NOT NULL,
	PRIMARY KEY (room_id, user_name)
);

-- Each room's one ordered stream: messages, edits, deletes and reactions
-- (a reaction added or removed is an event like any other). ts is the
-- protocol's: milliseconds since the epoch, taken when sequenced. No foreign
-- key to rooms: the row is there before the first event, and checking it
-- would cost every insert.
CREATE TABLE events (
	room_id   integer  NOT NULL,
	seq       bigint   NOT NULL CHECK (seq > 0),
	kind      text     NOT NULL CHECK (kind IN ('message', 'edit', 'delete', 'reaction')),
	user_name text     NOT NULL,
	target    bigint,
	body      text,
	emoji     text,
	add       boolean,
	client_id text,
	ts        bigint   NOT NULL,
	PRIMARY KEY (room_id, seq),
	CHECK ((kind = 'message') = (target IS NULL)),
	CHECK ((kind = 'reaction') = (emoji IS NOT NULL AND add IS NOT NULL))
);

-- A client id belongs to its user and room (PROTOCOL.md section 5). A
-- room's latest ids are loaded through the primary key (store.c): a
-- second (room, seq) index for them cost a fifth of the write rate.
CREATE UNIQUE INDEX events_client_id ON events (room_id, user_name, client_id)
	WHERE client_id IS NOT NULL;
-- The edits, deletes and reactions of one message.
CREATE INDEX events_target ON events (room_id, target) WHERE target IS NOT NULL;

CREATE TABLE read_positions (
	room_id   integer NOT NULL,
	user_name text    NOT NULL,
	seq       bigint  NOT NULL,
	PRIMARY KEY (room_id, user_name)
);
