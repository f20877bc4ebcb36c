-- The demo's example schema and data; also loaded by docker-compose.yml.
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, region text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE products (id int PRIMARY KEY, name text NOT NULL, category text NOT NULL, price numeric(10,2) NOT NULL);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL REFERENCES customers, status text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE order_items (order_id bigint NOT NULL REFERENCES orders ON DELETE CASCADE, product_id int NOT NULL REFERENCES products, quantity int NOT NULL, PRIMARY KEY (order_id, product_id));
INSERT INTO customers (id, name, region)
  SELECT i, 'customer ' || i, (ARRAY['north','south','east','west'])[1 + i % 4] FROM generate_series(1, 40) i;
INSERT INTO products (id, name, category, price)
  SELECT i, 'product ' || i, (ARRAY['books','games','tools'])[1 + i % 3], (5 + (i * 37) % 95)::numeric + 0.99 FROM generate_series(1, 15) i;
INSERT INTO orders (id, customer_id, status)
  SELECT i, 1 + (i * 7) % 40, (ARRAY['new','paid','shipped'])[1 + i % 3] FROM generate_series(1, 60) i;
INSERT INTO order_items (order_id, product_id, quantity)
  SELECT o, 1 + (o * 5 + k) % 15, 1 + (o + k) % 4 FROM generate_series(1, 60) o, generate_series(0, 1) k;
