"""What people read: status, explanations, reports and review packets."""
