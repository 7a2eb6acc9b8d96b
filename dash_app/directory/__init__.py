"""Who belongs where: each user's group and cost centre over time, from a CSV file and the company directory."""
