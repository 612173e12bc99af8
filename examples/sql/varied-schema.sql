-- A schema with the kinds of objects that upgrades trip over: partitioned tables,
-- materialized views, several index types, large objects, sequences, identity columns,
-- extensions, a view, a function and a trigger.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS hstore;

CREATE TABLE IF NOT EXISTS customers (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL,
  attrs hstore,
  created timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS customers_name_trgm ON customers USING gin (name gin_trgm_ops);
CREATE INDEX IF NOT EXISTS customers_created_brin ON customers USING brin (created);
CREATE INDEX IF NOT EXISTS customers_name_hash ON customers USING hash (name);

CREATE TABLE IF NOT EXISTS orders (
  id bigserial,
  customer_id bigint NOT NULL,
  placed date NOT NULL,
  amount numeric(12,2) NOT NULL,
  PRIMARY KEY (id, placed)
) PARTITION BY RANGE (placed);
CREATE TABLE IF NOT EXISTS orders_2025 PARTITION OF orders FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE IF NOT EXISTS orders_2026 PARTITION OF orders FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE INDEX IF NOT EXISTS orders_customer ON orders (customer_id);

CREATE SEQUENCE IF NOT EXISTS invoice_numbers START 1000;

INSERT INTO customers (name, attrs)
SELECT 'customer ' || g, hstore('tier', (g % 3)::text) FROM generate_series(1, 5000) g
WHERE NOT EXISTS (SELECT 1 FROM customers);
INSERT INTO orders (customer_id, placed, amount)
SELECT 1 + g % 5000, date '2025-01-01' + (g % 700), (g % 997) * 1.25 FROM generate_series(1, 50000) g
WHERE NOT EXISTS (SELECT 1 FROM orders);
SELECT nextval('invoice_numbers') FROM generate_series(1, 42) WHERE (SELECT last_value FROM invoice_numbers) < 1042;

CREATE MATERIALIZED VIEW IF NOT EXISTS revenue_by_month AS
  SELECT date_trunc('month', placed) AS month, sum(amount) AS revenue FROM orders GROUP BY 1;
CREATE OR REPLACE VIEW big_customers AS
  SELECT c.id, c.name, sum(o.amount) AS total FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY 1, 2 HAVING sum(o.amount) > 5000;

CREATE OR REPLACE FUNCTION touch_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.created := coalesce(NEW.created, now()); RETURN NEW; END $$;
DROP TRIGGER IF EXISTS customers_touch ON customers;
CREATE TRIGGER customers_touch BEFORE INSERT ON customers FOR EACH ROW EXECUTE FUNCTION touch_created();

CREATE TABLE IF NOT EXISTS documents (id int PRIMARY KEY, body oid);
INSERT INTO documents SELECT g, lo_from_bytea(0, convert_to(repeat('page ' || g, 100), 'UTF8')) FROM generate_series(1, 20) g
WHERE NOT EXISTS (SELECT 1 FROM documents);
