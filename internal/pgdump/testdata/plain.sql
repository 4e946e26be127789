--
-- PostgreSQL database dump
--

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET client_encoding = 'UTF8';
SELECT pg_catalog.set_config('search_path', '', false);

--
-- Name: Odd Schema; Type: SCHEMA; Schema: -; Owner: postgres
--

CREATE SCHEMA "Odd Schema";

--
-- Name: f(); Type: FUNCTION; Schema: public; Owner: postgres
--

CREATE FUNCTION public.f() RETURNS void
    LANGUAGE sql
    AS $$
  COPY public.accounts (id) TO stdout;
$$;

CREATE TABLE "Odd Schema"."Weird (name) ""q""" (
    "a b" text,
    "c)" integer
);

CREATE TABLE public.accounts (
    id integer NOT NULL,
    name text,
    note text
);

CREATE TABLE public.empty (
    id integer
);

CREATE TABLE public.nocols (
);

--
-- Data for Name: Weird (name) "q"; Type: TABLE DATA; Schema: Odd Schema; Owner: postgres
--

COPY "Odd Schema"."Weird (name) ""q""" ("a b", "c)") FROM stdin;
x y	1
(	\N
\.


--
-- Data for Name: accounts; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.accounts (id, name, note) FROM stdin;
1	alice	\N
2		tab\there
3	bob	new\nline
4	ünïcødé 日本語	back\\slash
5	dot	\\.
6	COPY public.x (a) FROM stdin;	\\.
\.


--
-- Data for Name: empty; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.empty (id) FROM stdin;
\.


--
-- Data for Name: nocols; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.nocols  FROM stdin;


\.


--
-- Name: accounts accounts_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.accounts
    ADD CONSTRAINT accounts_pkey PRIMARY KEY (id);


--
-- PostgreSQL database dump complete
--

